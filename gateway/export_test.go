package gateway

// Names for the external tests (package gateway_test), which may import
// gateway/sqlitestore where the package's own tests cannot (it imports
// gateway).

// Committer is the group commit, for commit_bench_test.go.
type Committer = committer

// CommitConfig holds the committer's limits.
type CommitConfig = commitConfig

// NewCommitter returns a committer on s that does not log.
func NewCommitter(s Store, cfg CommitConfig) *Committer { return newCommitter(s, nil, cfg) }
