package sensor

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// lexer reads the payload's JSON in place. It knows the payload's shape (an
// object of scalars and one flat object of numbers), so it never recurses: an
// object or array where a scalar belongs is rejected at its first byte,
// which makes deep nesting cost nothing. Syntax follows RFC 8259 strictly;
// every failure is a *Rejection whose detail is printable ASCII.
type lexer struct {
	b []byte
	i int
}

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, or 0 at the end.
func (l *lexer) peek() byte {
	l.ws()
	if l.i < len(l.b) {
		return l.b[l.i]
	}
	return 0
}

func (l *lexer) syntax(what string) error {
	if l.i >= len(l.b) {
		return reject(ReasonInvalidJSON, "unexpected end of JSON %s", what)
	}
	q := strconv.QuoteRuneToASCII(rune(l.b[l.i]))
	if l.b[l.i] >= utf8.RuneSelf {
		r, _ := utf8.DecodeRune(l.b[l.i:])
		q = strconv.QuoteRuneToASCII(r)
	}
	return reject(ReasonInvalidJSON, "invalid character %s %s at offset %d", q, what, l.i)
}

// open reads the '{' of an object; anything else is described.
func (l *lexer) open(what string) error {
	if l.peek() == '{' {
		l.i++
		return nil
	}
	desc, err := l.describe()
	if err != nil {
		return err
	}
	if what == "payload" {
		return reject(ReasonNotAnObject, "payload is %s, not a JSON object", desc)
	}
	return reject(ReasonWrongType, "%s is %s, want an object", what, desc)
}

// first reports whether the object just opened has a member.
func (l *lexer) first() (bool, error) {
	if l.peek() == '}' {
		l.i++
		return false, nil
	}
	return true, nil
}

// next reads the ',' or '}' after a member and reports whether another
// member follows.
func (l *lexer) next() (bool, error) {
	switch l.peek() {
	case ',':
		l.i++
		return true, nil
	case '}':
		l.i++
		return false, nil
	}
	return false, l.syntax("after an object member")
}

// key reads a member's name and the colon after it.
func (l *lexer) key() (string, error) {
	if l.peek() != '"' {
		if l.i < len(l.b) && l.b[l.i] != '}' {
			if desc, err := l.describe(); err == nil {
				return "", reject(ReasonInvalidJSON, "object key is %s", desc)
			}
		}
		return "", l.syntax("where an object key belongs")
	}
	k, err := l.text(true)
	if err != nil {
		return "", err
	}
	if l.peek() != ':' {
		return "", l.syntax("after an object key")
	}
	l.i++
	return k, nil
}

// str reads a string starting at its opening quote.
func (l *lexer) str() (string, error) { return l.text(false) }

// text reads a string starting at its opening quote; with intern, an
// unescaped one comes from the table of names seen before (object keys and
// metric names repeat in every payload; values such as ts do not).
func (l *lexer) text(intern bool) (string, error) {
	start := l.i
	l.i++
	escaped := false
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			l.i++
			if !escaped {
				if intern {
					return internName(l.b[start+1 : l.i-1]), nil
				}
				return string(l.b[start+1 : l.i-1]), nil
			}
			// Escapes are rare in ids and names: let encoding/json
			// resolve them, surrogate pairs included.
			var s string
			if err := json.Unmarshal(l.b[start:l.i], &s); err != nil {
				q := strconv.QuoteToASCII(err.Error())
				return "", reject(ReasonInvalidJSON, "%s", q[1:len(q)-1])
			}
			return s, nil
		case c == '\\':
			escaped = true
			if l.i+1 >= len(l.b) {
				l.i++
				return "", l.syntax("in a string")
			}
			switch l.b[l.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				l.i += 2
			case 'u':
				if l.i+6 > len(l.b) || !isHex4(l.b[l.i+2:l.i+6]) {
					l.i++
					return "", l.syntax("in a \\u escape")
				}
				l.i += 6
			default:
				l.i++
				return "", l.syntax("in a string escape")
			}
		case c < 0x20:
			return "", l.syntax("in a string")
		default:
			l.i++
		}
	}
	return "", l.syntax("in a string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number reads a number with RFC 8259's grammar and returns its text.
func (l *lexer) number() ([]byte, error) {
	start := l.i
	digits := func() int {
		n := 0
		for l.i < len(l.b) && '0' <= l.b[l.i] && l.b[l.i] <= '9' {
			l.i++
			n++
		}
		return n
	}
	if l.i < len(l.b) && l.b[l.i] == '-' {
		l.i++
	}
	switch {
	case l.i < len(l.b) && l.b[l.i] == '0':
		l.i++
	case digits() == 0:
		return nil, l.syntax("in a number")
	}
	if l.i < len(l.b) && l.b[l.i] == '.' {
		l.i++
		if digits() == 0 {
			return nil, l.syntax("in a number")
		}
	}
	if l.i < len(l.b) && (l.b[l.i] == 'e' || l.b[l.i] == 'E') {
		l.i++
		if l.i < len(l.b) && (l.b[l.i] == '+' || l.b[l.i] == '-') {
			l.i++
		}
		if digits() == 0 {
			return nil, l.syntax("in a number")
		}
	}
	return l.b[start:l.i], nil
}

// literal reads true, false or null.
func (l *lexer) literal(word string) error {
	if len(l.b)-l.i >= len(word) && string(l.b[l.i:l.i+len(word)]) == word {
		l.i += len(word)
		return nil
	}
	return l.syntax("in a literal")
}

// describe reads the value at hand if it is a scalar and says what it is;
// an object or array is named without being read.
func (l *lexer) describe() (string, error) {
	switch c := l.peek(); {
	case c == '{':
		return "an object", nil
	case c == '[':
		return "an array", nil
	case c == '"':
		s, err := l.str()
		if err != nil {
			return "", err
		}
		return "the string " + strconv.QuoteToASCII(safe(s)), nil
	case c == '-' || '0' <= c && c <= '9':
		n, err := l.number()
		if err != nil {
			return "", err
		}
		return "the number " + safe(string(n)), nil
	case c == 't' || c == 'f':
		word := "true"
		if c == 'f' {
			word = "false"
		}
		return "a boolean", l.literal(word)
	case c == 'n':
		return "null", l.literal("null")
	}
	return "", l.syntax("where a value belongs")
}

func (l *lexer) stringValue(field string) (string, error) {
	if l.peek() == '"' {
		return l.str()
	}
	desc, err := l.describe()
	if err != nil {
		return "", err
	}
	if desc == "an object" || desc == "an array" {
		return "", reject(ReasonWrongType, "%s is %s", field, desc)
	}
	return "", reject(ReasonWrongType, "%s is %s, want a string", field, desc)
}

func (l *lexer) numberValue(field string) ([]byte, error) {
	if c := l.peek(); c == '-' || '0' <= c && c <= '9' {
		return l.number()
	}
	desc, err := l.describe()
	if err != nil {
		return nil, err
	}
	if desc == "an object" || desc == "an array" {
		return nil, reject(ReasonWrongType, "%s is %s", field, desc)
	}
	return nil, reject(ReasonWrongType, "%s is %s, want a number", field, desc)
}

func (l *lexer) metricsValue() (map[string]float64, error) {
	if err := l.open("metrics"); err != nil {
		return nil, err
	}
	m := make(map[string]float64, 4)
	more, err := l.first()
	for ; more && err == nil; more, err = l.next() {
		name, err := l.key()
		if err != nil {
			return nil, err
		}
		if len(m) == MaxMetrics {
			return nil, reject(ReasonTooManyMetrics, "more than %d metrics", MaxMetrics)
		}
		if err := ValidateMetricName(name); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, reject(ReasonDuplicateKey, "metric %q appears twice", name)
		}
		var n []byte
		if c := l.peek(); c == '-' || '0' <= c && c <= '9' {
			n, err = l.number()
		} else { // the error's wording is built only when it is needed
			n, err = l.numberValue("metric " + strconv.Quote(name))
		}
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(v, 0) {
			return nil, reject(ReasonValueOutOfRange, "metric %q value %+q is outside the float64 range", name, safe(string(n)))
		}
		if v == 0 && nonZeroMantissa(n) {
			return nil, reject(ReasonValueOutOfRange, "metric %q value %+q is too small for a float64 and would be stored as 0", name, safe(string(n)))
		}
		m[name] = v
	}
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, reject(ReasonNoMetrics, "metrics is empty")
	}
	return m, nil
}

// nonZeroMantissa reports whether a JSON number has a non-zero digit before
// its exponent: such a number that parses to 0 underflowed.
func nonZeroMantissa(n []byte) bool {
	for _, c := range n {
		switch {
		case c == 'e' || c == 'E':
			return false
		case '1' <= c && c <= '9':
			return true
		}
	}
	return false
}

// names interns object keys and metric names, so decoding a payload does not
// allocate a string for each. It holds at most maxNames names of at most
// maxNameLen bytes: hostile payloads with ever new keys fill it once, and
// then names are simply allocated again.
var names struct {
	sync.RWMutex
	m map[string]string
}

const (
	maxNames   = 4096
	maxNameLen = 64
)

func internName(b []byte) string {
	if len(b) > maxNameLen {
		return string(b)
	}
	names.RLock()
	s, ok := names.m[string(b)] // no allocation: the compiler looks up the bytes
	names.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	names.Lock()
	if names.m == nil {
		names.m = make(map[string]string)
	}
	if len(names.m) < maxNames {
		names.m[s] = s
	}
	names.Unlock()
	return s
}
