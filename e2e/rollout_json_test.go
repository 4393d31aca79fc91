package e2e

import "time"

// The parts of grpcurl's JSON rendering of the rollout API that the tests
// read (proto JSON: camelCase, enum names, int64 as strings, zero values
// left out).

type serviceJSON struct {
	Name         string `json:"name"`
	Container    string `json:"container"`
	Selector     string `json:"selector"`
	CurrentImage string `json:"currentImage"`
}

type rolloutJSON struct {
	ID         string `json:"id"`
	Service    string `json:"service"`
	Image      string `json:"image"`
	State      string `json:"state"`
	Message    string `json:"message"`
	RollbackOf string `json:"rollbackOf"`
	Batches    []struct {
		Index    int      `json:"index"`
		Canary   bool     `json:"canary"`
		AgentIDs []string `json:"agentIds"`
	} `json:"batches"`
	Excluded []struct {
		AgentID string `json:"agentId"`
		Reason  string `json:"reason"`
	} `json:"excluded"`
	Hosts      []rolloutHostJSON `json:"hosts"`
	CreatedAt  time.Time         `json:"createdAt"`
	FinishedAt time.Time         `json:"finishedAt"`
}

type rolloutHostJSON struct {
	AgentID       string    `json:"agentId"`
	Batch         int       `json:"batch"`
	Step          string    `json:"step"`
	PreviousImage string    `json:"previousImage"`
	Message       string    `json:"message"`
	StartedAt     time.Time `json:"startedAt"`
	FinishedAt    time.Time `json:"finishedAt"`
}

type rolloutResponseJSON struct {
	Rollout rolloutJSON `json:"rollout"`
}

type listRolloutsJSON struct {
	Rollouts []rolloutJSON `json:"rollouts"`
}

// rolloutEventJSON is one message of WatchRollout's stream.
type rolloutEventJSON struct {
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

// fleetAgentJSON is the part of an agent the rollout test reads: its
// labels and the containers its last heartbeat reported.
type fleetAgentJSON struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Labels        map[string]string `json:"labels"`
	State         string            `json:"state"`
	LastHeartbeat struct {
		App struct {
			Healthy bool `json:"healthy"`
		} `json:"app"`
		Containers []managedContainerJSON `json:"containers"`
	} `json:"lastHeartbeat"`
}

type managedContainerJSON struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}
