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
package main
