package server

import "fmt"

// zapErrorLog routes promhttp's error messages to the server's logger.
type zapErrorLog struct{ s *Server }

func (l zapErrorLog) Println(v ...any) { l.s.log.Error("metrics: " + fmt.Sprint(v...)) }
