package rollouttest

import (
	"fmt"
	"strings"

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

// ControlPlaneYAML is the control_plane section of an agent's
// configuration: one address, or several (the replicas of docs/ha.md),
// and the CA's pin.
func ControlPlaneYAML(addrs []string, caSHA256 string) string {
	if len(addrs) == 1 {
		return fmt.Sprintf("control_plane:\n  address: %s\n  ca_sha256: %s\n", addrs[0], caSHA256)
	}
	return fmt.Sprintf("control_plane:\n  addresses: [%s]\n  ca_sha256: %s\n", strings.Join(addrs, ", "), caSHA256)
}

// LoadBalancerYAML is the whole configuration of the load balancer's
// agent, a process on the machine that runs n: labelled role=lb, it
// registers at cpAddrs (one control plane, or its replicas) with the
// token in tokenFile and drains the service's upstream in n.
func LoadBalancerYAML(cpAddrs []string, join grpcurl.JoinToken, tokenFile, stateDir, hostname string, n *fixture.Nginx) string {
	return ControlPlaneYAML(cpAddrs, join.CACertSHA256) + fmt.Sprintf(`join_token_file: %[1]s
state_dir: %[2]s
hostname: %[3]s
heartbeat_interval: 1s
labels:
  role: lb
log:
  format: console
nginx:
  binary: %[4]s
  config_file: %[5]s
  upstreams:
    %[6]s:
      file: %[7]s
      block: %[6]s
`, tokenFile, stateDir, hostname, n.Binary, n.ConfigFile, Upstream, n.UpstreamFile(Upstream))
}
