package rollouttest

import (
	"fmt"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// AppHostYAML is the health and docker sections of an application host's
// agent configuration: its container is the service's "web" to commands,
// managed by name, and its releases come from registry only.
func AppHostYAML(healthURL, registry, container string) string {
	return fmt.Sprintf(`health:
  url: %[1]s
  timeout: 2s
docker:
  allowed_registries: [%[2]s]
  managed_containers: [%[3]s]
  container_names:
    web: %[3]s
  stop_timeout: 5s
  start_grace_period: 1s
`, healthURL, registry, container)
}

// LoadBalancerYAML is the whole configuration of the load balancer's
// agent, a process on the machine that runs n: labelled role=lb, it
// registers at cpAddr with the token in tokenFile and drains the service's
// upstream in n.
func LoadBalancerYAML(cpAddr string, join grpcurl.JoinToken, tokenFile, stateDir, hostname string, n *fixture.Nginx) string {
	return fmt.Sprintf(`control_plane:
  address: %[1]s
  ca_sha256: %[2]s
join_token_file: %[3]s
state_dir: %[4]s
hostname: %[5]s
heartbeat_interval: 1s
labels:
  role: lb
log:
  format: console
nginx:
  binary: %[6]s
  config_file: %[7]s
  upstreams:
    %[8]s:
      file: %[9]s
      block: %[8]s
`, cpAddr, join.CACertSHA256, tokenFile, stateDir, hostname, n.Binary, n.ConfigFile, Upstream, n.UpstreamFile(Upstream))
}
