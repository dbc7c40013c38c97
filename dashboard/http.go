package dashboard

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

//go:embed web
var web embed.FS

// Handler serves the page, its assets and the read-only API:
//
//	GET /                      the dashboard (fleet view; #/device/ID for a device)
//	GET /api/fleet?n=20        fleet summary and the n most anomalous devices
//	GET /api/device?id=ID      a device's recent series and alerts
//	GET /api/alerts?n=50       the last alert events
//	GET /api/events            server-sent events: one "alert" event per alert
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/fleet", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, h.Fleet(intParam(r, "n", 20)))
	})
	mux.HandleFunc("GET /api/device", func(w http.ResponseWriter, r *http.Request) {
		v, ok := h.Device(r.URL.Query().Get("id"))
		if !ok {
			http.Error(w, "unknown device", http.StatusNotFound)
			return
		}
		writeJSON(w, v)
	})
	mux.HandleFunc("GET /api/alerts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, h.Alerts(intParam(r, "n", 50)))
	})
	mux.HandleFunc("GET /api/events", h.events)
	return mux
}

func (h *Hub) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	ch, cancel := h.subscribe()
	defer cancel()
	fmt.Fprint(w, ": sensorflow alerts\n\n")
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg := <-ch:
			fmt.Fprintf(w, "event: alert\ndata: %s\n\n", msg)
			flusher.Flush()
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
			flusher.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func intParam(r *http.Request, name string, def int) int {
	n, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || n < 1 || n > 1000 {
		return def
	}
	return n
}
