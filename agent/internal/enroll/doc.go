// Package enroll gives the agent its identity: on first start it makes a key,
// registers with a join token over server-authenticated TLS and keeps the
// certificate, CA bundle and agent ID in its state directory; on later starts
// it loads them and skips registration. While the agent runs, it renews the
// certificate at about two thirds of its lifetime, over mTLS with the current
// one, and hands the new one to new connections (Credentials).
package enroll
