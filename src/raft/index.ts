export { RaftLog } from './log.ts';
export { DEFAULT_RAFT_OPTIONS, type RaftOptions, validateRaftOptions } from './options.ts';
export { Progress, type ProgressState } from './progress.ts';
export { majority, quorumMatchIndex, tallyVotes, type VoteResult } from './quorum.ts';
export {
  type ProposeRejection,
  type ProposeResult,
  Raft,
  type RaftConfig,
  type TransferResult,
} from './raft.ts';
export type { Ready } from './ready.ts';
export {
  bootstrapSnapshot,
  EMPTY_CONFIG,
  MemoryStorage,
  normalizeConfig,
  type Storage,
} from './storage.ts';
export * from './types.ts';
