// probe: a tiny static HTTP GET prober for healthchecks in images without a shell.
//
//	probe [-timeout 3s] [-q] URL
//	probe -install DEST
//
// Exit 0 when the response status is 2xx, 1 otherwise (including connection errors and timeouts).
// -install copies this binary to DEST (mode 0755, atomically): the stack's one-shot `probe` service
// puts it on a shared volume that every other service mounts read-only for its healthcheck.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// install copies the running executable to dest through a temporary file in the same directory.
func install(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "overall request timeout")
	quiet := flag.Bool("q", false, "print nothing on success")
	dest := flag.String("install", "", "copy this binary to `DEST` and exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-timeout 3s] [-q] URL | -install DEST\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dest != "" {
		if err := install(*dest); err != nil {
			fmt.Fprintf(os.Stderr, "probe: install %s: %v\n", *dest, err)
			os.Exit(1)
		}
		return
	}
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
