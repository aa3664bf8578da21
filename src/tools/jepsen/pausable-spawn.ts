/**
 * Spawn options for a child the run stops with SIGSTOP (a client worker, the register):
 * a session and process group of its own (`detached`).
 *
 * In the run's own process group, a stopped child is at the mercy of the kernel's
 * orphaned-process-group rule: when the group has no parent left outside it in the same
 * session (the run started in the background by a shell that has since exited, as CI
 * and scripts do) and any process of it exits while one is stopped (a node killed by the
 * nemesis), every process of the group gets SIGHUP, then SIGCONT. A paused client worker
 * died of that SIGHUP in a 600 s run (seed 1211). Alone in its session the child's group
 * never qualifies: no exit of another process concerns it. It is not in the terminal's
 * group either, so it must end when the run does: each exits when its IPC channel to the
 * run closes.
 */
export const PAUSED_CHILD_SPAWN = { detached: true } as const;
