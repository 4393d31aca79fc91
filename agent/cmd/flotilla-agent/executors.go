package main

import (
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"flotilla.dev/agent/internal/agent"
	"flotilla.dev/agent/internal/backup"
	"flotilla.dev/agent/internal/config"
	"flotilla.dev/agent/internal/docker"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/nginx"
	"flotilla.dev/pkg/command"
)

// defaultDockerSocket is where a host's Docker engine listens unless
// DOCKER_HOST or docker.host says otherwise.
const defaultDockerSocket = "/var/run/docker.sock"

// executors builds the command executors this host's configuration asks
// for: Docker when a Docker engine is configured or present, backups when
// databases are configured, Nginx when upstreams are. A kind without an
// executor is rejected by the agent with a reason that says so.
func executors(cfg config.Config, cfgPath string, log *zap.Logger) (agent.Config, func(), error) {
	out := agent.Config{Executors: map[string]executor.Executor{}}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if wantsDocker(cfg.Docker) {
		dc := cfg.Docker
		dc.HealthURL, dc.HealthTimeout = cfg.Health.URL, cfg.Health.Timeout
		d, err := docker.New(dc, log.Named("docker"))
		if err != nil {
			return out, closeAll, err
		}
		closers = append(closers, func() { _ = d.Close() })
		for _, k := range []string{command.KindPull, command.KindRestart, command.KindStartCandidate, command.KindBlueGreen} {
			out.Executors[k] = d
		}
		out.Containers = d
	}
	if len(cfg.Backup.Databases) > 0 {
		b, err := backup.New(cfg.Backup, cfg.StateDir, log.Named("backup"))
		if err != nil {
			return out, closeAll, err
		}
		walCfg := cfg.Backup.WALConfig
		if walCfg == "" && cfgPath != "" {
			walCfg, _ = filepath.Abs(cfgPath)
		}
		if self, err := os.Executable(); err == nil && walCfg != "" {
			b.SetWALFetch(self, walCfg)
		}
		for _, k := range []string{command.KindBackup, command.KindBaseBackup, command.KindPrune, command.KindRestore, command.KindDrill} {
			out.Executors[k] = b
		}
		out.Databases = b
	}
	if len(cfg.Nginx.Upstreams) > 0 {
		n, err := nginx.New(cfg.Nginx, log.Named("nginx"))
		if err != nil {
			return out, closeAll, err
		}
		out.Executors[command.KindDrain], out.Executors[command.KindUndrain], out.Executors[command.KindSwapServers] = n, n, n
	}
	return out, closeAll, nil
}

func wantsDocker(c docker.Config) bool {
	if c.Host != "" || len(c.AllowedRegistries) > 0 || len(c.ManagedContainers) > 0 {
		return true
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return true
	}
	_, err := os.Stat(strings.TrimPrefix(defaultDockerSocket, "unix://"))
	return err == nil
}
