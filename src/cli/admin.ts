import * as grpc from '@grpc/grpc-js';
import {
  packageDefinition,
  type RevokeLockResponse,
  type SetLockRulesResponse,
  type StatusResponse,
  type TransferLeadershipResponse,
  type WireMember,
} from '../api/proto.ts';
import { lockRulesDigest, lockRulesFromWire, wireLockRules } from '../api/rules.ts';
import { findNode, loadClusterConfig } from '../config/index.ts';
import { BEHAVIOUR_BASE, LOCK_LIMIT_NAMES, type LockLimits } from '../lock/index.ts';
import { OPTIONAL_LOCK_RULE_NAMES, optionalRule, ruleDifferences } from '../lock/optional-rules.ts';
import { describeDifferences } from '../node/lock-rules.ts';
import type { AdminCommand, AdminTarget, CliIo } from './cli.ts';
import { exitFailed, exitOk } from './cli.ts';
import { describeServiceError } from './errors.ts';
import { memberJson, nodeStatusJson } from './json.ts';
import { formatHeaderTable, formatJson, formatTable } from './table.ts';
import { clientOptions, resolveTarget } from './target.ts';

/**
 * `dlm status`, `dlm member add|remove`, `dlm leader transfer` and `dlm rules [apply]`:
 * an operator's view of the cluster, its membership and its lock rules, over the public
 * dlm.v1.Cluster API. Membership calls
 * go to the leader: before each attempt the command asks every endpoint's Status who
 * leads, and it retries UNAVAILABLE with backoff until --timeout-ms, so it also works
 * while an election is under way.
 */
export async function runAdmin(
  command: AdminCommand & { readonly target: AdminTarget },
  io: CliIo,
): Promise<number> {
  const { endpoints, credentials } = await resolveTarget(command.target);
  const client = new ClusterClient(endpoints, credentials, Date.now() + command.target.timeoutMs);
  try {
    switch (command.name) {
      case 'status':
        return await printStatus(client, io, command.json);
      case 'member add': {
        const member = await memberToAdd(command, command.target);
        const response = await client.onLeader('AddMember', member);
        io.out(`${command.id} is a voter now\n${formatMembers(membersOf(response))}`);
        return exitOk;
      }
      case 'member remove': {
        const response = await client.onLeader('RemoveMember', { node_id: command.id });
        io.out(`${command.id} is no longer a member\n${formatMembers(membersOf(response))}`);
        return exitOk;
      }
      case 'leader transfer': {
        const response = (await client.onLeader('TransferLeadership', {
          target_node_id: command.id ?? '',
        })) as unknown as TransferLeadershipResponse;
        io.out(`the leader is ${response.leader_id} now\n`);
        return exitOk;
      }
      case 'rules':
        return await printRules(client, command.target.configPath, io, command.json);
      case 'rules apply':
        return await applyRules(client, command.target.configPath, io);
      case 'revoke':
        return await revoke(client, command, io);
    }
  } finally {
    client.close();
  }
}

/** The new member's addresses: the flags, else its entry in the config file. */
async function memberToAdd(
  command: Extract<AdminCommand, { name: 'member add' }>,
  target: AdminTarget,
): Promise<{ node_id: string; peer_address: string; client_address: string }> {
  let { peerAddress, clientAddress } = command;
  if (peerAddress === null || clientAddress === null) {
    const node = await loadClusterConfig(target.configPath)
      .then((config) => findNode(config, command.id))
      .catch((error: unknown) => {
        throw new Error(
          `--peer-address and --client-address are needed, or a config that names ${command.id}: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
    peerAddress ??= node.peerAddress;
    clientAddress ??= node.clientAddress;
  }
  return { node_id: command.id, peer_address: peerAddress, client_address: clientAddress };
}

/**
 * One RevokeLock on the leader, not retried once sent: a revoke has no request id, so a
 * retry after a lost answer could end a grant made since. Finding the leader is retried.
 */
async function revoke(
  client: ClusterClient,
  command: Extract<AdminCommand, { name: 'revoke' }>,
  io: CliIo,
): Promise<number> {
  const request = { lock: command.lock, reason: command.reason };
  const response = (await client.onLeader('RevokeLock', request, {
    once: true,
  })) as unknown as RevokeLockResponse;
  const index = Number(response.header.index);
  if (command.json) {
    io.out(formatJson({ lock: command.lock, freed: response.freed, index }));
  } else if (response.freed === 0) {
    io.out(`${command.lock} was free: nothing revoked (index ${index})\n`);
  } else {
    io.out(`${command.lock}: ${response.freed} grant(s) revoked at index ${index}\n`);
  }
  return exitOk;
}

/** Proposes the config file's lock section (defaults filled in) as the cluster's rules. */
async function applyRules(client: ClusterClient, configPath: string, io: CliIo): Promise<number> {
  const { lock } = await loadClusterConfig(configPath);
  const response = (await client.onLeader('SetLockRules', {
    rules: wireLockRules(lock),
  })) as unknown as SetLockRulesResponse;
  const rules = rulesFromWire(response.rules);
  io.out(
    `the lock rules of ${configPath} are in force from index ${response.rules_index} (digest ${lockRulesDigest(rules)})\n`,
  );
  return exitOk;
}

/**
 * The rules in force as the leader (else the first node that answers) sees them; nodes
 * that have not applied the same rules yet are named, and so is every rule in which
 * --config, when it can be read, differs from the log.
 */
async function printRules(
  client: ClusterClient,
  configPath: string,
  io: CliIo,
  json: boolean,
): Promise<number> {
  const answers = await client.statusAll();
  const view = preferredView(answers);
  if (view === undefined) {
    io.err(NO_NODE_ANSWERED);
    return exitFailed;
  }
  const rules = rulesFromWire(view.lock_rules);
  if (json) {
    io.out(
      formatJson({
        node_id: view.node_id,
        rules,
        rules_index: Number(view.lock_rules_index),
        digest: view.lock_rules_digest,
      }),
    );
    return exitOk;
  }
  const setAt =
    view.lock_rules_index === '0'
      ? 'not set through the log yet: the built-in defaults'
      : `set at index ${view.lock_rules_index}`;
  io.out(
    `lock rules in force, as ${view.node_id} sees them (${setAt}, digest ${view.lock_rules_digest}):\n`,
  );
  io.out(
    formatTable([
      ...LOCK_LIMIT_NAMES.map((field) => [`  lock.${field}`, String(rules[field])]),
      // An optional rule not set is in force at its default: say which it is.
      ...OPTIONAL_LOCK_RULE_NAMES.map((field) => [
        `  lock.${field}`,
        rules[field] === undefined
          ? `${optionalRule(rules, field)} (default)`
          : String(rules[field]),
      ]),
    ]),
  );
  for (const { status } of answers) {
    if (status === undefined || status.lock_rules_digest === view.lock_rules_digest) continue;
    io.out(
      `${status.node_id} has other rules (digest ${status.lock_rules_digest}, applied index ${status.applied_index}): it has not applied the same log yet\n`,
    );
  }
  const file = await loadClusterConfig(configPath).catch(() => null);
  const differences = file === null ? [] : ruleDifferences(file.lock, rules);
  if (differences.length > 0) {
    io.out(
      `${configPath} differs (dlm rules apply would make it the rules): ${describeDifferences(differences)}\n`,
    );
  }
  return exitOk;
}

function rulesFromWire(wire: Readonly<Record<string, string>> | null | undefined): LockLimits {
  return lockRulesFromWire(wire);
}

/** The leader's own answer, else the first answer. */
function preferredView(
  answers: readonly { status?: StatusResponse }[],
): StatusResponse | undefined {
  const leader = answers.find(
    ({ status }) => status !== undefined && status.node_id === status.leader_id,
  );
  return (leader ?? answers.find(({ status }) => status !== undefined))?.status;
}

const NO_NODE_ANSWERED =
  'no node answered: check the addresses (--endpoints, or the clientAddress entries of --config) and that the nodes run\n';

const STATUS_HEADER = [
  'ADDRESS',
  'NODE',
  'ROLE',
  'TERM',
  'COMMIT',
  'APPLIED',
  'LEADER',
  'RULES',
  'POLICY',
  'BEHAVIOUR',
];

async function printStatus(client: ClusterClient, io: CliIo, json: boolean): Promise<number> {
  const answers = await client.statusAll();
  const view = preferredView(answers);
  if (json) {
    io.out(
      formatJson({
        nodes: answers.map(({ address, status, problem }) =>
          nodeStatusJson(address, status, problem, status === undefined ? '' : roleOf(status)),
        ),
        view_of: view?.node_id ?? null,
        leader_id: view === undefined || view.leader_id === '' ? null : view.leader_id,
        members: (view?.members ?? []).map(memberJson),
      }),
    );
  } else {
    const rows = answers.map(({ address, status, problem }) =>
      status === undefined
        ? [address, '-', 'unreachable', problem ?? 'no answer']
        : [
            address,
            status.node_id,
            roleOf(status),
            status.term,
            status.commit_index,
            status.applied_index,
            status.leader_id || 'none',
            status.lock_rules_digest,
            status.policy_digest || 'open',
            `${behaviourOf(status).version}/${behaviourOf(status).max}`,
          ],
    );
    io.out(formatHeaderTable(STATUS_HEADER, rows));
  }
  if (view === undefined) {
    io.err(NO_NODE_ANSWERED);
    return exitFailed;
  }
  if (json) {
    if (view.leader_id !== '') return exitOk;
    io.err('no leader is known: is a majority of the voters running and reachable?\n');
    return exitFailed;
  }
  io.out(`members, as ${view.node_id} sees them:\n`);
  io.out(formatMembers(view.members));
  io.out(
    view.lock_rules_index === '0'
      ? `lock rules: the built-in defaults (digest ${view.lock_rules_digest}), none set through the log yet\n`
      : `lock rules: digest ${view.lock_rules_digest}, set at index ${view.lock_rules_index}; dlm rules prints them\n`,
  );
  io.out(describeBehaviour(view, answers));
  const policies = new Set(answers.flatMap(({ status }) => (status ? [status.policy_digest] : [])));
  if (policies.size > 1) {
    io.err(
      'nodes enforce different access policies (policy column): a caller may be refused by one node and served by another; give every node the same auth section and SIGHUP it\n',
    );
  }
  if (view.leader_id === '') {
    io.err('no leader is known: is a majority of the voters running and reachable?\n');
    return exitFailed;
  }
  return exitOk;
}

/** In force and the binary's highest; nodes older than behaviour versions answer 0 for both and apply 1. */
function behaviourOf(status: StatusResponse): { version: number; max: number } {
  return {
    version: Math.max(BEHAVIOUR_BASE, status.behaviour_version),
    max: Math.max(BEHAVIOUR_BASE, status.behaviour_max),
  };
}

/** What holds the version where it is, from the nodes that answered (docs/operations.md, Upgrading). */
function describeBehaviour(
  view: StatusResponse,
  answers: readonly { status?: StatusResponse | undefined }[],
): string {
  const { version } = behaviourOf(view);
  const nodes = answers.flatMap(({ status }) => (status ? [status] : []));
  const newest = Math.max(...nodes.map((status) => behaviourOf(status).max));
  const behind = nodes.filter((status) => behaviourOf(status).max < newest);
  if (behind.length > 0) {
    const names = behind.map((status) => `${status.node_id} (up to ${behaviourOf(status).max})`);
    return `lock behaviour: version ${version} in force; ${names.join(', ')} run an older binary: the leader raises the version once every member runs one that applies ${newest}\n`;
  }
  if (version < newest) {
    return `lock behaviour: version ${version} in force; every node that answered applies ${newest}: the leader raises it once it hears every member\n`;
  }
  return `lock behaviour: version ${version} in force, the newest every node that answered applies\n`;
}

function roleOf(status: StatusResponse): string {
  if (status.leader_id !== '' && status.leader_id === status.node_id) return 'leader';
  const self = status.members.find((member) => member.id === status.node_id);
  if (self === undefined) return 'not a member';
  return self.learner ? 'learner' : 'follower';
}

function membersOf(response: Record<string, unknown>): readonly WireMember[] {
  return (response.members as WireMember[] | undefined) ?? [];
}

function formatMembers(members: readonly WireMember[]): string {
  return formatTable(
    members.map((member) => [
      `  ${member.id}`,
      member.learner ? 'learner' : 'voter',
      `peer ${member.peer_address || '?'}`,
      `client ${member.client_address || '?'}`,
    ]),
  );
}

type Response = Record<string, unknown>;
type Method = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: Response) => void,
) => void;

/** Each Status probe gets this long, so one dead node does not hold up the others. */
const STATUS_PROBE_MS = 2_000;
const RETRY_DELAY_MS_MIN = 50;
const RETRY_DELAY_MS_MAX = 1_000;

const ClusterService = (
  grpc.loadPackageDefinition(packageDefinition) as unknown as {
    dlm: { v1: { Cluster: grpc.ServiceClientConstructor } };
  }
).dlm.v1.Cluster;

/** dlm.v1.Cluster on a set of endpoints, with one overall deadline. */
class ClusterClient {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(
    private readonly endpoints: readonly string[],
    private readonly credentials: grpc.ChannelCredentials,
    private readonly deadlineMs: number,
  ) {}

  async statusAll(): Promise<{ address: string; status?: StatusResponse; problem?: string }[]> {
    return Promise.all(
      this.endpoints.map(async (address) => {
        try {
          const deadline = Math.min(this.deadlineMs, Date.now() + STATUS_PROBE_MS);
          const status = await this.call(address, 'Status', {}, deadline);
          return { address, status: status as unknown as StatusResponse };
        } catch (error) {
          return { address, problem: describeError(error) };
        }
      }),
    );
  }

  /**
   * Calls `method` on the leader. UNAVAILABLE (not the leader, no leader yet, node
   * down, a change lost to a new leader) is retried with backoff; any other error is
   * final.
   */
  async onLeader(
    method: string,
    request: object,
    { once = false }: { once?: boolean } = {},
  ): Promise<Response> {
    let lastProblem = 'no node answered';
    for (let attempt = 0; ; attempt++) {
      const found = await this.findLeader();
      if (typeof found === 'string') lastProblem = found;
      else {
        try {
          return await this.call(found.address, method, request, this.deadlineMs);
        } catch (error) {
          const code = (error as grpc.ServiceError).code;
          if (
            once &&
            (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED)
          ) {
            throw new Error(
              `${method} at ${found.leaderId} (${found.address}): ${describeError(error)}; it may or may not have applied: look before calling again (dlm describe)`,
            );
          }
          if (code !== grpc.status.UNAVAILABLE) {
            throw Object.assign(
              new Error(
                `${method} at ${found.leaderId} (${found.address}): ${describeError(error)}`,
              ),
              { code },
            );
          }
          lastProblem = `${found.leaderId} (${found.address}): ${describeError(error)}`;
        }
      }
      const delayMs = Math.min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_MIN * 2 ** attempt);
      if (Date.now() + delayMs >= this.deadlineMs) {
        throw new Error(`gave up finding the leader in time; last: ${lastProblem}`);
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs * (0.5 + Math.random() / 2)));
    }
  }

  /** The leader's id and client address, as the first node that knows a leader says. */
  private async findLeader(): Promise<{ leaderId: string; address: string } | string> {
    const answers = await this.statusAll();
    for (const { status } of answers) {
      if (status === undefined || status.leader_id === '') continue;
      const leader = status.members.find((member) => member.id === status.leader_id);
      if (leader !== undefined && leader.client_address !== '') {
        return { leaderId: leader.id, address: leader.client_address };
      }
    }
    const problems = answers.map(({ address, problem }) => `${address}: ${problem ?? 'no leader'}`);
    return `no node knows a reachable leader (${problems.join('; ')})`;
  }

  private call(address: string, method: string, request: object, deadlineMs: number) {
    const client = this.client(address) as unknown as Record<string, Method>;
    return new Promise<Response>((resolve, reject) => {
      client[method]?.call(client, request, { deadline: deadlineMs }, (error, response) =>
        error === null ? resolve(response) : reject(error),
      );
    });
  }

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ClusterService(address, this.credentials, clientOptions());
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}

const describeError = describeServiceError;
