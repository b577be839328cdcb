/**
 * Runs a bench's broker under a memory limit, as a Kubernetes pod with `resources.limits.memory` runs it:
 * in a memory cgroup of that size. Node reads the limit when it starts and sizes V8's heap from it (its
 * old-generation ceiling, and with it how far V8 lets the heap grow before it compacts), so a broker
 * measured on a large machine without one would be measured with another heap than it runs with.
 *
 * cgroup v2 (a writable /sys/fs/cgroup with the memory controller) or v1 (/sys/fs/cgroup/memory); root is
 * needed to make one. Where neither can be made the bench runs without a limit and says why.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { deploymentMemoryLimitBytes } from '../test/support/deployment.js'
import { imageNodeOptions } from '../test/support/dockerfile.js'

export interface MemoryCgroup {
  /** runBroker's `launcher`: joins the cgroup, then execs node (the pid stays the same). */
  launcher: string[]
  /** How the limit was applied, for the results. */
  description: string
  /** Removes the cgroup; call once the broker has exited. */
  remove: () => void
}

function tryCreate (parent: string, limitFile: string, name: string, limitBytes: number): string | undefined {
  const dir = join(parent, name)
  try {
    mkdirSync(dir)
    writeFileSync(join(dir, limitFile), String(limitBytes))
    return dir
  } catch {
    try { rmdirSync(dir) } catch { /* never made */ }
    return undefined
  }
}

/** A memory cgroup of `limitBytes`, or the reason there is none. */
export function memoryCgroup (limitBytes: number): MemoryCgroup | { unavailable: string } {
  const name = `credential-broker-bench-${process.pid}`
  const v2 = '/sys/fs/cgroup'
  const v2Controllers = join(v2, 'cgroup.controllers')
  const v2Memory = existsSync(v2Controllers) && readFileSync(v2Controllers, 'utf8').split(/\s+/).includes('memory')
  const dir = (v2Memory ? tryCreate(v2, 'memory.max', name, limitBytes) : undefined) ??
    (existsSync('/sys/fs/cgroup/memory') ? tryCreate('/sys/fs/cgroup/memory', 'memory.limit_in_bytes', name, limitBytes) : undefined)
  if (dir === undefined) return { unavailable: 'no writable memory cgroup (cgroup v2 memory controller or v1 /sys/fs/cgroup/memory; needs root)' }
  return {
    launcher: ['sh', '-c', `echo $$ > ${dir}/cgroup.procs && exec "$@"`, 'sh'],
    description: `memory cgroup ${dir}, limit ${limitBytes / 2 ** 20} MiB`,
    remove: () => { try { rmdirSync(dir) } catch { /* still in use or gone: the kernel keeps it until empty */ } }
  }
}

/** How a bench starts the broker so that it runs as the Deployment runs it, and what to record of that. */
export interface AsDeployed {
  /** The image's NODE_OPTIONS (Dockerfile), for the broker's environment. */
  env: Record<string, string>
  /** For startBroker: inside a memory cgroup of the Deployment's limit, when one can be made. */
  launcher: { launcher?: string[] }
  /** For the results: the options, and the limit or why there is none. */
  recorded: { nodeOptions: string | undefined, memoryLimit: string }
  /** Call once the broker has exited. */
  remove: () => void
}

export function asDeployed (): AsDeployed {
  const nodeOptions = imageNodeOptions()
  const cgroup = memoryCgroup(deploymentMemoryLimitBytes())
  const made = 'launcher' in cgroup
  return {
    env: nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions },
    launcher: made ? { launcher: cgroup.launcher } : {},
    recorded: { nodeOptions, memoryLimit: made ? cgroup.description : `none: ${cgroup.unavailable}` },
    remove: made ? cgroup.remove : () => {}
  }
}
