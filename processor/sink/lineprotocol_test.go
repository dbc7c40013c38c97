package sink

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sensorflow/sensorflow/internal/sensor"
)

func TestReadingLine(t *testing.T) {
	r := sensor.Reading{DeviceID: "dev-1", Site: "plant.1", TS: time.Unix(1, 5).UTC(),
		Metrics: map[string]float64{"temperature": 21.5, "a": -1e-7}}
	require.Equal(t, `readings,device_id=dev-1,site=plant.1 a=-1e-07,temperature=21.5 1000000005`, string(appendReadingLine(nil, &r, r.MetricNames())))
}

// Ids are validated at the bridge; the encoder must still never let a value
// break out of its tag or string.
func TestLineProtocolEscaping(t *testing.T) {
	a := sensor.Alert{AlertID: "id", DeviceID: "d,x=1 y", Site: `s\`, Metric: "m", Kind: "k", Severity: "warning",
		State: "open", Message: "say \"hi\"\nnext=line", TS: time.Unix(2, 0)}
	got := string(appendAlertLine(nil, &a))
	require.Equal(t, `alerts,device_id=d\,x\=1\ y,kind=k,metric=m,severity=warning,site=s\\ alert_id="id",state="open",open=1,score=0,value=0,expected_low=0,expected_high=0,message="say \"hi\" next=line" 2000000000`, got)
	require.NotContains(t, got, "\n")
}

func TestScoreLine(t *testing.T) {
	r := sensor.Reading{DeviceID: "d", Site: "s", TS: time.Unix(3, 0), Metrics: map[string]float64{"b": 1, "a": 2}}
	require.Equal(t, `scores,device_id=d,site=s a=0.5,b=0.25 3000000000`, string(appendScoreLine(nil, &r, r.MetricNames(), []float64{0.5, 0.25})))
}
