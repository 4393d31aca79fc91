// Package audit records every mutating call — who, what, when, from where,
// and with what result — in the store's audit trail and in the log.
//
// Two unary interceptors work together. The recorder (UnaryServerInterceptor)
// runs before authentication, so that it also sees the calls authentication
// refuses; it writes their row after the refusal. The gate
// (UnaryGateInterceptor) runs after authentication: for a call that may
// proceed it writes the row first and refuses the call with Unavailable when
// it cannot, so that no mutation ever happens without a trace (fail closed);
// the recorder then completes that row with the outcome. A failure to write
// an outcome cannot undo the call: it is logged as an error and counted in
// flotilla_audit_write_failures_total, and the row keeps an empty code.
package audit
