// Package pki is the control plane's certificate authority: it creates or
// loads the CA, issues the server certificate for the public port, signs
// agents' certificate signing requests, and reads an agent's identity back
// out of a verified client certificate.
package pki
