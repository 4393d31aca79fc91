// Package rollouttest holds the rollout scenarios that both end-to-end
// suites run, written once against the Fleet interface (etcd's pattern
// of one test body driven against an in-process and a binary cluster):
// package e2e drives them on agents running as local processes, package
// fleet on agents running as containers of the project's images. Each
// suite keeps only the scenarios that need what its fleet alone has (a
// dry run and the history on one side; a control plane or an agent killed
// on the other).
package rollouttest
