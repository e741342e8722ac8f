// Command host is a toy master beside regent on the Go library: it writes a counter only while
// its Leadership says it may, every write fenced with the term and sent exactly once.
//
//	go run ./examples/host demo/node1/regent.sock 10
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	regent "regent.local/client"
)

func main() {
	socket, seconds := "/run/regent/regent.sock", 30
	if len(os.Args) > 1 {
		socket = os.Args[1]
	}
	if len(os.Args) > 2 {
		seconds, _ = strconv.Atoi(os.Args[2])
	}
	lead := regent.StartLeadership(socket, regent.LeadershipOptions{
		OnActive:   func(term uint64, _ *uint64) { fmt.Printf("[watch] active in term %d\n", term) },
		OnInactive: func(reason string) { fmt.Printf("[watch] inactive: %s\n", reason) },
	})
	kv := regent.NewKv(socket, lead, regent.WriteOptions{})
	written, refused, counter := 0, 0, 0
	for end := time.Now().Add(time.Duration(seconds) * time.Second); time.Now().Before(end); {
		if !lead.IsWritable() {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		counter++
		_, err := kv.Put([]byte("toy-master/counter"), []byte(strconv.Itoa(counter)), 0)
		switch {
		case err == nil:
			written++
		case errors.Is(err, regent.ErrNotWritable):
		default:
			refused++
			fmt.Printf("[write] %v\n", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	lead.Close()
	fmt.Printf("host: written=%d refused=%d\n", written, refused)
}
