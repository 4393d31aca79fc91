// Package auth authenticates every call to the control plane: operators by
// bearer token, agents by the client certificate the CA issued them, and
// nobody at all for the methods that must stay open (health, reflection,
// registration, which carries its own join token).
package auth
