// Segment's official Go client (analytics-go v3), unchanged, pointed at eventpipe's collector.
//
//	segment-go URL WRITE_KEY RUN AT_MS
//
// sends every call type for user "<RUN>-user" (explicit timestamps AT_MS and AT_MS+1000 ms, written in a
// +05:30 zone with nanoseconds as Go's encoder does, explicit messageIds "<RUN>-…", one event sent twice
// with its messageId), closes the client (which flushes) and prints a JSON report: how many messages the
// client says were sent and failed.
// tests/test_clients.py runs it and reads the stored rows back from ClickHouse.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	analytics "gopkg.in/segmentio/analytics-go.v3"
)

type report struct {
	mu      sync.Mutex
	Library string   `json:"library_version"`
	Sent    int      `json:"sent"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors"`
}

func (r *report) Success(analytics.Message) { r.mu.Lock(); r.Sent++; r.mu.Unlock() }
func (r *report) Failure(_ analytics.Message, err error) {
	r.mu.Lock()
	r.Failed++
	r.Errors = append(r.Errors, err.Error())
	r.mu.Unlock()
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: segment-go URL WRITE_KEY RUN AT_MS")
		os.Exit(2)
	}
	url, key, run := os.Args[1], os.Args[2], os.Args[3]
	atMs, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "AT_MS:", err)
		os.Exit(2)
	}
	// A client in India: the encoder writes the zone's offset and all nine digits of nanoseconds.
	zone := time.FixedZone("IST", 5*3600+1800)
	at := time.UnixMilli(atMs).Add(456789 * time.Nanosecond).In(zone)
	later := at.Add(time.Second)

	rep := &report{Library: analytics.Version, Errors: []string{}}
	client, err := analytics.NewWithConfig(key, analytics.Config{
		Endpoint:  url,
		BatchSize: 4, // two requests, each with the default context on its envelope
		Interval:  50 * time.Millisecond,
		Callback:  rep,
		// The default backoff retries for minutes; a refusal should fail the test at once instead.
		RetryAfter: func(int) time.Duration { return 100 * time.Millisecond },
		// analytics-go puts this context once on each batch, not in the messages.
		DefaultContext: &analytics.Context{
			App:      analytics.AppInfo{Name: "go-shop", Version: "2.4.1", Build: "241"},
			Device:   analytics.DeviceInfo{Manufacturer: "Lenovo", Model: "ThinkPad X1"},
			OS:       analytics.OSInfo{Name: "Linux", Version: "6.8"},
			IP:       net.ParseIP("203.0.113.77"),
			Locale:   "hi-IN",
			Timezone: "Asia/Kolkata",
			Extra:    map[string]interface{}{"source": "eventpipe-tests"},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	user, anon := run+"-user", run+"-anon"
	id := func(name string) string { return run + "-" + name }
	order := analytics.Track{MessageId: id("track"), UserId: user, Event: "Order Completed", Timestamp: at,
		Properties: analytics.NewProperties().SetRevenue(12.5).SetCurrency("EUR").
			Set("items", []map[string]interface{}{{"sku": "a-1", "qty": 2}})}
	messages := []analytics.Message{
		analytics.Identify{MessageId: id("identify"), UserId: user, AnonymousId: anon, Timestamp: at,
			Traits: analytics.NewTraits().SetEmail("go@example.com").SetName("Go Pher").Set("logins", 3)},
		order,
		order, // the same messageId again, as an app retrying would: stored once
		// no messageId or timestamp: the client makes both
		analytics.Track{UserId: user, Event: "Order Viewed", Properties: analytics.NewProperties().Set("n", 1)},
		// the event's own context merges over the batch's: its locale wins, the library stays
		analytics.Page{MessageId: id("page"), UserId: user, Name: "Pricing", Timestamp: later,
			Properties: analytics.NewProperties().SetURL("https://shop.example/pricing").SetPath("/pricing"),
			Context:    &analytics.Context{Locale: "en-IN", Page: analytics.PageInfo{Referrer: "https://search.example/"}}},
		analytics.Screen{MessageId: id("screen"), UserId: user, Name: "Settings", Timestamp: later,
			Properties: analytics.NewProperties().Set("tab", "privacy")},
		analytics.Group{MessageId: id("group"), UserId: user, GroupId: run + "-group", Timestamp: later,
			Traits: analytics.NewTraits().SetName("Initech").Set("employees", 420)},
		analytics.Alias{MessageId: id("alias"), PreviousId: anon, UserId: user, Timestamp: later},
	}
	for _, msg := range messages {
		if err := client.Enqueue(msg); err != nil {
			fmt.Fprintln(os.Stderr, "enqueue:", err)
			os.Exit(1)
		}
	}
	if err := client.Close(); err != nil { // flushes, waits for the requests
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	if rep.Failed > 0 || rep.Sent != len(messages) {
		os.Exit(1)
	}
}
