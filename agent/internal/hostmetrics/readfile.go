package hostmetrics

import (
	"errors"
	"io"
	"os"
)

// readFile appends the content of file to buf, which the caller reuses
// between heartbeats (os.ReadFile would allocate a buffer each time).
func readFile(file string, buf []byte) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer f.Close()
	for {
		if buf, err = growFull(file, buf); err != nil {
			return nil, err
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
