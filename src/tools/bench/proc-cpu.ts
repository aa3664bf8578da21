import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * CPU time a process has used so far (user + system), from /proc/PID/stat, in ms.
 * Linux only; the benchmark reports no server CPU elsewhere.
 */
export function processCpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    throw new Error(`cannot read /proc/${pid}/stat (has process ${pid} exited?)`, {
      cause: error,
    });
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name, utime and stime are fields 14 and 15 of the whole line.
  const utimeTicks = Number(fields[11]);
  const stimeTicks = Number(fields[12]);
  if (!Number.isFinite(utimeTicks) || !Number.isFinite(stimeTicks)) {
    throw new Error(`/proc/${pid}/stat has no utime/stime fields: ${stat.slice(0, 200)}`);
  }
  return ((utimeTicks + stimeTicks) * 1000) / clockTicksPerSecond();
}

/**
 * How often the process's main thread (a Node process's event loop) was switched out
 * while it could still run: `nonvoluntary_ctxt_switches` of /proc/PID/status, which
 * counts that thread alone. Each one is a wait for a CPU that another process held, so
 * per write it tells a loop that waited for a core from one that was busy.
 */
export function mainThreadPreemptions(pid: number): number {
  const match = /^nonvoluntary_ctxt_switches:\s*(\d+)$/m.exec(processStatus(pid));
  if (match === null) {
    throw new Error(`/proc/${pid}/status has no nonvoluntary_ctxt_switches line`);
  }
  return Number(match[1]);
}

/** /proc/PID/status as text; throws naming the pid if it is gone. */
export function processStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (error) {
    throw new Error(`cannot read /proc/${pid}/status (has process ${pid} exited?)`, {
      cause: error,
    });
  }
}

let ticksPerSecond: number | null = null;

/** USER_HZ: the unit of utime/stime. Nearly always 100, but asked rather than assumed. */
function clockTicksPerSecond(): number {
  if (ticksPerSecond !== null) return ticksPerSecond;
  try {
    ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  } catch {
    ticksPerSecond = 100;
  }
  if (!Number.isFinite(ticksPerSecond) || ticksPerSecond <= 0) ticksPerSecond = 100;
  return ticksPerSecond;
}

/** Whether /proc/PID/stat can be read: CPU figures need it. */
export function canReadProcessCpu(): boolean {
  try {
    processCpuMs(process.pid);
    return true;
  } catch {
    return false;
  }
}
