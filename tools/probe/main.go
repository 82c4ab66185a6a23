// probe: a tiny static HTTP GET prober for healthchecks in images without a shell.
//
//	probe [-timeout 3s] URL
//
// Exit 0 when the response status is 2xx, 1 otherwise (including connection errors and timeouts).
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "overall request timeout")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-timeout 3s] [-q] URL\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	url := flag.Arg(0)
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: %s: %v\n", url, err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(os.Stderr, "probe: %s: HTTP %d\n", url, resp.StatusCode)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("probe: %s: HTTP %d\n", url, resp.StatusCode)
	}
}
