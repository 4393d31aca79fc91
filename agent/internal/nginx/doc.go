// Package nginx drains and undrains servers in the Nginx upstream files the
// agent's configuration names: it marks a server "down" (or not) in the
// file, checks the whole configuration with "nginx -t" and reloads nginx
// gracefully, and puts the old file back when nginx refuses the change.
package nginx
