//go:build linux || darwin

package hostmetrics

import (
	"os"

	"golang.org/x/sys/unix"
)

// readFile appends the content of file to buf with open(2), read(2) and
// close(2). os.Open would also allocate a File with a finalizer and try to
// register the descriptor with the network poller (an epoll_ctl that
// fails for a proc file), for each of the four files of every heartbeat.
func readFile(file string, buf []byte) ([]byte, error) {
	fd, err := retryEINTR(func() (int, error) { return unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(fd)
	for {
		if buf, err = growFull(file, buf); err != nil {
			return nil, err
		}
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf[len(buf):cap(buf)]) })
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: file, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// retryEINTR repeats a system call that a signal interrupted.
func retryEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != unix.EINTR {
			return n, err
		}
	}
}
