package e2e

import "time"

// The parts of grpcurl's JSON rendering of the command API that the tests
// read. grpcurl prints proto JSON: camelCase names, enum value names,
// 64-bit integers as strings, durations as "1.5s", fields at their zero
// value left out.

type fleetCommandJSON struct {
	ID        string            `json:"id"`
	State     string            `json:"state"`
	Selector  string            `json:"selector"`
	AgentIDs  []string          `json:"agentIds"`
	Reason    string            `json:"reason"`
	CreatedBy string            `json:"createdBy"`
	CreatedAt time.Time         `json:"createdAt"`
	Hosts     []hostCommandJSON `json:"hosts"`
	Summary   map[string]int    `json:"summary"`
}

type hostCommandJSON struct {
	AgentID    string     `json:"agentId"`
	CommandID  string     `json:"commandId"`
	State      string     `json:"state"`
	Message    string     `json:"message"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt time.Time  `json:"finishedAt"`
	Result     resultJSON `json:"result"`
}

type resultJSON struct {
	Pull *struct {
		Image      string `json:"image"`
		ImageID    string `json:"imageId"`
		RepoDigest string `json:"repoDigest"`
	} `json:"pull,omitempty"`
	Restart *struct {
		Container           string `json:"container"`
		ContainerID         string `json:"containerId"`
		Image               string `json:"image"`
		ImageID             string `json:"imageId"`
		PreviousContainerID string `json:"previousContainerId"`
		PreviousImage       string `json:"previousImage"`
		PreviousImageID     string `json:"previousImageId"`
	} `json:"restart,omitempty"`
	Backup *struct {
		Database        string `json:"database"`
		Path            string `json:"path"`
		ManifestPath    string `json:"manifestPath"`
		SizeBytes       uint64 `json:"sizeBytes,string"`
		SHA256          string `json:"sha256"`
		Duration        string `json:"duration"`
		PgDumpVersion   string `json:"pgDumpVersion"`
		ServerVersion   string `json:"serverVersion"`
		VerifiedEntries int    `json:"verifiedEntries"`
	} `json:"backup,omitempty"`
	Drain *struct {
		Upstream string `json:"upstream"`
		Server   string `json:"server"`
		File     string `json:"file"`
		Changed  bool   `json:"changed"`
	} `json:"drain,omitempty"`
}

// watchJSON is one message of WatchCommand's stream: a snapshot or an event.
type watchJSON struct {
	Snapshot *fleetCommandJSON `json:"snapshot"`
	Event    *struct {
		AgentID string           `json:"agentId"`
		Event   commandEventJSON `json:"event"`
	} `json:"event"`
}

type commandEventJSON struct {
	CommandID string    `json:"commandId"`
	State     string    `json:"state"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
	Progress  *struct {
		Message string `json:"message"`
		Current uint64 `json:"current,string"`
		Total   uint64 `json:"total,string"`
	} `json:"progress"`
	Result *resultJSON `json:"result"`
}

type commandResponseJSON struct {
	Command fleetCommandJSON `json:"command"`
}

type listCommandsJSON struct {
	Commands      []fleetCommandJSON `json:"commands"`
	NextPageToken string             `json:"nextPageToken"`
}

// host is the command's only host; the tests run commands on one agent.
func (fc fleetCommandJSON) host() hostCommandJSON {
	if len(fc.Hosts) == 0 {
		return hostCommandJSON{}
	}
	return fc.Hosts[0]
}
