// Command testapp is the application that Flotilla's tests deploy: an HTTP
// server whose version, health and failure mode are chosen when it is
// built or started, so that one binary plays v1, v2 and a broken v3.
//
//	GET /        the version, e.g. "v2\n"
//	GET /health  {"status":"healthy","timestamp":"…","database":"ok","cache":"ok"}
//
// Environment (each overrides the build-time variable of the same role):
//
//	APP_ADDR     listen address (default :8080)
//	APP_VERSION  the version served at / (build: -X main.version=v2)
//	APP_MODE     "" or "healthy"; "crash" exits 1 at once (a release whose
//	             container does not start); "unhealthy" answers /health with
//	             503 and status "unhealthy" (build: -X main.mode=crash)
//	LEAK_MB_PER_S  MiB a second the application leaks (allocated and
//	             written, so resident, and never freed): the memory leak
//	             that remediation tests restart (default 0: none)
//	LEAK_MAX_MB  the leak stops after this many MiB (default 0: never), so
//	             a container stays above a threshold below its limit
package main
