package grpcurl

import "time"

// The parts of grpcurl's JSON rendering of the API that the tests read.
// grpcurl prints proto JSON: camelCase names, enum value names, 64-bit
// integers as strings, durations as "1.5s", fields at their zero value
// left out.

// JoinToken is CreateJoinToken's answer.
type JoinToken struct {
	Token        string `json:"token"`
	CACertSHA256 string `json:"caCertSha256"`
}

// Agent is flotilla.v1.Agent.
type Agent struct {
	ID            string             `json:"id"`
	Hostname      string             `json:"hostname"`
	Labels        map[string]string  `json:"labels"`
	State         string             `json:"state"`
	StateReason   string             `json:"stateReason"`
	ConnectedAt   time.Time          `json:"connectedAt"`
	Containers    []ManagedContainer `json:"containers"`
	LastHeartbeat Heartbeat          `json:"lastHeartbeat"`
}

// Heartbeat is the agent's last flotilla.v1.Heartbeat.
type Heartbeat struct {
	Host struct {
		CPUPercent    *float64 `json:"cpuPercent"`
		MemoryPercent float64  `json:"memoryPercent"`
		Disks         []struct {
			Path        string  `json:"path"`
			UsedPercent float64 `json:"usedPercent"`
		} `json:"disks"`
	} `json:"host"`
	App struct {
		Healthy  bool   `json:"healthy"`
		Status   string `json:"status"`
		Database string `json:"database"`
		Cache    string `json:"cache"`
		Latency  string `json:"latency"`
	} `json:"app"`
	Containers []ManagedContainer `json:"containers"`
	Databases  []DatabaseStats    `json:"databases"`
}

// DatabaseStats is flotilla.v1.DatabaseStats.
type DatabaseStats struct {
	Name string `json:"name"`
	// Connections is an int64, which proto JSON prints as a string, and
	// leaves out when 0.
	Connections string `json:"connections"`
}

// ManagedContainer is flotilla.v1.ManagedContainer.
type ManagedContainer struct {
	Name      string             `json:"name"`
	Image     string             `json:"image"`
	State     string             `json:"state"`
	HostPorts []int              `json:"hostPorts"`
	Resources ContainerResources `json:"resources"`
}

// ContainerResources is flotilla.v1.ContainerResources (the memory
// figures; protojson writes 64-bit integers as strings).
type ContainerResources struct {
	MemoryWorkingSetBytes uint64    `json:"memoryWorkingSetBytes,string"`
	MemoryLimitBytes      uint64    `json:"memoryLimitBytes,string"`
	OOMKills              uint64    `json:"oomKills,string"`
	StartedAt             time.Time `json:"startedAt"`
}

// ListAgentsResponse is ListAgents' answer.
type ListAgentsResponse struct {
	Agents    []Agent `json:"agents"`
	TotalSize int     `json:"totalSize"`
}

// FleetCommand is flotilla.v1.FleetCommand.
type FleetCommand struct {
	ID        string         `json:"id"`
	State     string         `json:"state"`
	Selector  string         `json:"selector"`
	AgentIDs  []string       `json:"agentIds"`
	Reason    string         `json:"reason"`
	CreatedBy string         `json:"createdBy"`
	CreatedAt time.Time      `json:"createdAt"`
	Hosts     []HostCommand  `json:"hosts"`
	Summary   map[string]int `json:"summary"`
}

// Host is the command's first host; the tests run most commands on one
// agent.
func (fc FleetCommand) Host() HostCommand {
	if len(fc.Hosts) == 0 {
		return HostCommand{}
	}
	return fc.Hosts[0]
}

// HostCommand is one host's part of a fleet command.
type HostCommand struct {
	AgentID    string    `json:"agentId"`
	CommandID  string    `json:"commandId"`
	State      string    `json:"state"`
	Message    string    `json:"message"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Result     Result    `json:"result"`
}

// Result is flotilla.v1.CommandResult: one of its kinds is set.
type Result struct {
	Pull    *PullResult    `json:"pull,omitempty"`
	Restart *RestartResult `json:"restart,omitempty"`
	Backup  *BackupResult  `json:"backup,omitempty"`
	Drain   *DrainResult   `json:"drain,omitempty"`
}

// PullResult is flotilla.v1.PullResult.
type PullResult struct {
	Image      string `json:"image"`
	ImageID    string `json:"imageId"`
	RepoDigest string `json:"repoDigest"`
}

// RestartResult is flotilla.v1.RestartResult.
type RestartResult struct {
	Container           string `json:"container"`
	ContainerID         string `json:"containerId"`
	Image               string `json:"image"`
	ImageID             string `json:"imageId"`
	PreviousContainerID string `json:"previousContainerId"`
	PreviousImage       string `json:"previousImage"`
	PreviousImageID     string `json:"previousImageId"`
}

// BackupResult is flotilla.v1.BackupResult.
type BackupResult struct {
	Database        string `json:"database"`
	Path            string `json:"path"`
	ManifestPath    string `json:"manifestPath"`
	SizeBytes       uint64 `json:"sizeBytes,string"`
	SHA256          string `json:"sha256"`
	Duration        string `json:"duration"`
	PgDumpVersion   string `json:"pgDumpVersion"`
	ServerVersion   string `json:"serverVersion"`
	VerifiedEntries int    `json:"verifiedEntries"`
}

// DrainResult is flotilla.v1.DrainResult.
type DrainResult struct {
	Upstream string `json:"upstream"`
	Server   string `json:"server"`
	File     string `json:"file"`
	Changed  bool   `json:"changed"`
}

// CommandWatch is one message of WatchCommand's stream: a snapshot of the
// command or one host's event.
type CommandWatch struct {
	Snapshot *FleetCommand `json:"snapshot"`
	Event    *struct {
		AgentID string       `json:"agentId"`
		Event   CommandEvent `json:"event"`
	} `json:"event"`
}

// CommandEvent is flotilla.v1.CommandEvent.
type CommandEvent struct {
	CommandID string    `json:"commandId"`
	State     string    `json:"state"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
	Progress  *struct {
		Message string `json:"message"`
		Current uint64 `json:"current,string"`
		Total   uint64 `json:"total,string"`
	} `json:"progress"`
	Result *Result `json:"result"`
}

// CommandResponse is the answer of RunCommand and GetCommand.
type CommandResponse struct {
	Command FleetCommand `json:"command"`
}

// ListCommandsResponse is ListCommands' answer.
type ListCommandsResponse struct {
	Commands      []FleetCommand `json:"commands"`
	NextPageToken string         `json:"nextPageToken"`
}

// Service is flotilla.v1.Service.
type Service struct {
	Name         string `json:"name"`
	Container    string `json:"container"`
	Selector     string `json:"selector"`
	CurrentImage string `json:"currentImage"`
}

// ServiceResponse is the answer of PutService and GetService.
type ServiceResponse struct {
	Service Service `json:"service"`
}

// Rollout is flotilla.v1.Rollout.
type Rollout struct {
	ID         string `json:"id"`
	Service    string `json:"service"`
	Image      string `json:"image"`
	State      string `json:"state"`
	Message    string `json:"message"`
	RollbackOf string `json:"rollbackOf"`
	CreatedBy  string `json:"createdBy"`
	Batches    []struct {
		Index    int      `json:"index"`
		Canary   bool     `json:"canary"`
		AgentIDs []string `json:"agentIds"`
	} `json:"batches"`
	Excluded []struct {
		AgentID string `json:"agentId"`
		Reason  string `json:"reason"`
	} `json:"excluded"`
	Hosts      []RolloutHost `json:"hosts"`
	CreatedAt  time.Time     `json:"createdAt"`
	FinishedAt time.Time     `json:"finishedAt"`
}

// RolloutHost is one host's part of a rollout.
type RolloutHost struct {
	AgentID       string    `json:"agentId"`
	Batch         int       `json:"batch"`
	Step          string    `json:"step"`
	PreviousImage string    `json:"previousImage"`
	Message       string    `json:"message"`
	StartedAt     time.Time `json:"startedAt"`
	FinishedAt    time.Time `json:"finishedAt"`
}

// Ended reports whether a rollout in state s has ended.
func Ended(s string) bool {
	switch s {
	case "ROLLOUT_STATE_SUCCEEDED", "ROLLOUT_STATE_FAILED", "ROLLOUT_STATE_ROLLED_BACK",
		"ROLLOUT_STATE_ABORTED", "ROLLOUT_STATE_ROLLBACK_FAILED":
		return true
	}
	return false
}

// RolloutResponse is the answer of StartRollout and GetRollout.
type RolloutResponse struct {
	Rollout Rollout `json:"rollout"`
}

// ListRolloutsResponse is ListRollouts' answer.
type ListRolloutsResponse struct {
	Rollouts []Rollout `json:"rollouts"`
}

// RolloutEvent is one message of WatchRollout's stream.
type RolloutEvent struct {
	Event struct {
		Sequence string    `json:"sequence"`
		At       time.Time `json:"at"`
		State    *struct {
			State   string `json:"state"`
			Message string `json:"message"`
		} `json:"state"`
		Batch *struct {
			Index    int    `json:"index"`
			Started  bool   `json:"started"`
			Finished bool   `json:"finished"`
			Message  string `json:"message"`
		} `json:"batch"`
		Host *struct {
			AgentID     string `json:"agentId"`
			Step        string `json:"step"`
			Message     string `json:"message"`
			RollingBack bool   `json:"rollingBack"`
		} `json:"host"`
	} `json:"event"`
}

// AuditEvent is the part of flotilla.v1.AuditEvent the tests compare: two
// events are equal when these fields are.
type AuditEvent struct {
	// ID is an int64, which proto JSON prints as a string.
	ID        string `json:"id"`
	Principal string `json:"principal"`
	Method    string `json:"method"`
	Code      string `json:"code"`
}

// ListAuditEventsResponse is ListAuditEvents' answer.
type ListAuditEventsResponse struct {
	Events []AuditEvent `json:"events"`
}
