/**
 * Real Redis topologies for tests, from Debian's packages (redis-server, redis-sentinel, redis-cli), on free
 * loopback ports with everything on disk in one temp dir: a 3-master Cluster with one replica each, and a
 * Sentinel group of one master, one replica and three sentinels. Both require authentication (the Cluster
 * an ACL user, the Sentinel group a password on the data nodes and another on the sentinels), so the
 * broker's credentials are exercised too. Start one per test file (they take a few seconds); each test
 * still owns its key prefix. close() stops every process and removes the temp dir, also after a failed
 * start; a process that exits without close() kills what it spawned.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as connectTls } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import type { RedisConnectionConfig } from '../../src/store/redis-client.js'
import { freePort } from './ports.js'

/** True when the binaries of both topologies are installed (`.ci/run` installs them). */
export function hasTopologyBinaries (): boolean {
  return ['redis-server', 'redis-sentinel', 'redis-cli'].every(binary => spawnSync(binary, ['--version'], { stdio: 'ignore' }).status === 0)
}

/**
 * For `describe.runIf`: skip where the binaries are missing on a developer machine, but fail in CI (CI=true),
 * where a missing package must not turn the topology tests into silent skips.
 */
export function topologyTestsCanRun (): boolean {
  const available = hasTopologyBinaries()
  if (!available && process.env.CI === 'true') throw new Error('redis-server, redis-sentinel and redis-cli are required in CI (apt-get install redis-server redis-sentinel)')
  return available
}

/** One redis-server or redis-sentinel process of a topology. */
export interface TopologyProcess {
  readonly port: number
  readonly role: 'node' | 'sentinel'
  alive: () => boolean
  /** SIGKILL: a crash. */
  kill: () => Promise<void>
  /** Starts (again) on the same port and files; resolves once it answers PING. */
  start: () => Promise<void>
}

/** How a client reaches a process: credentials, and TLS (trusting the test CA) when `tls`. */
interface Credentials { username?: string | undefined, password: string, tls?: boolean | undefined }

/**
 * A test CA and a server certificate it signed, for 127.0.0.1 and localhost, valid for a century (made with
 * openssl req/x509; test use only). other-ca.pem is an unrelated CA, for a client that must refuse the server.
 */
export const testTls = (() => {
  const dir = fileURLToPath(new URL('./tls/', import.meta.url))
  return { caFile: join(dir, 'ca.pem'), otherCaFile: join(dir, 'other-ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') }
})()

/** redis-server / redis-sentinel settings for TLS only (no plain port): the test certificate, no client certificates. */
function tlsArgs (port: number): string[] {
  return ['--port', '0', '--tls-port', String(port), '--tls-cert-file', testTls.certFile, '--tls-key-file', testTls.keyFile,
    '--tls-ca-cert-file', testTls.caFile, '--tls-auth-clients', 'no', '--tls-replication', 'yes']
}

// A test process that ends without close() (a crash, a timeout, Ctrl-C) must not leave Redis processes
// listening or temp dirs behind.
const everyChild = new Set<ChildProcess>()
const everyDir = new Set<string>()
const cleanUp = (): void => {
  for (const child of everyChild) child.kill('SIGKILL')
  for (const dir of everyDir) rmSync(dir, { recursive: true, force: true })
}
process.once('exit', cleanUp)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    cleanUp()
    process.kill(process.pid, signal)
  })
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** True once the port answers AUTH + PING with PONG. */
async function answers (port: number, auth: Credentials): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    const socket = auth.tls === true ? connectTls({ host: '127.0.0.1', port, ca: readFileSync(testTls.caFile) }) : connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(1000, () => { done(false) })
    socket.once(auth.tls === true ? 'secureConnect' : 'connect', () => {
      const login = auth.username === undefined ? ['AUTH', auth.password] : ['AUTH', auth.username, auth.password]
      socket.write(`${[login, ['PING']].map(command => `*${command.length}\r\n${command.map(part => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join('')}`).join('')}`)
    })
    socket.on('data', data => {
      reply += data.toString()
      if (reply.includes('+PONG')) done(true)
      else if (reply.startsWith('-') || reply.includes('\r\n-')) done(false)
    })
    socket.once('error', () => { done(false) })
  })
}

function tail (file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n')
  } catch {
    return '(no log)'
  }
}

function topologyProcess (options: { role: 'node' | 'sentinel', port: number, args: () => string[], auth: Credentials, logFile: string }): TopologyProcess {
  let child: ChildProcess | undefined
  const alive = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null
  return {
    port: options.port,
    role: options.role,
    alive,
    kill: async () => {
      const running = child
      if (running === undefined || !alive()) return
      await new Promise<void>(resolve => {
        running.once('exit', () => { resolve() })
        running.kill('SIGKILL')
      })
    },
    start: async () => {
      if (alive()) return
      const spawned = spawn(options.role === 'sentinel' ? 'redis-sentinel' : 'redis-server', options.args(), { stdio: 'ignore' })
      everyChild.add(spawned)
      spawned.once('exit', () => { everyChild.delete(spawned) })
      child = spawned
      const deadline = Date.now() + 15_000
      while (!await answers(options.port, options.auth)) {
        if (!alive()) throw new Error(`${options.role} on port ${options.port} exited at start:\n${tail(options.logFile)}`)
        if (Date.now() > deadline) throw new Error(`${options.role} on port ${options.port} did not answer within 15 s:\n${tail(options.logFile)}`)
        await sleep(50)
      }
    }
  }
}

/** Polls `check` until it returns true; throws with `what` after `timeoutMs`. */
async function until (what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await sleep(everyMs)
  }
}

interface TopologyBase {
  readonly dir: string
  /** Config.redis without the key prefix: what createRedisClient and createRedisGrantStore take. */
  readonly connection: RedisConnectionConfig
  /** The broker's environment for this topology (instead of REDIS_URL). */
  readonly env: Record<string, string>
  /** A plain connection to one node (or sentinel) of this topology, closed by close(). */
  client: (port: number) => Redis
  /** The keys matching a SCAN pattern, on every master. */
  findKeys: (pattern: string) => Promise<string[]>
  /** Deletes every key under a prefix, on every master. */
  deleteKeys: (prefix: string) => Promise<void>
  close: () => Promise<void>
}

/** Shared bookkeeping: the temp dir, the processes, the admin clients; close() undoes all of it. */
function topologyBase (name: string): { dir: string, processes: TopologyProcess[], clients: Redis[], close: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), `cb-${name}-`))
  everyDir.add(dir)
  const processes: TopologyProcess[] = []
  const clients: Redis[] = []
  return {
    dir,
    processes,
    clients,
    close: async () => {
      for (const client of clients.splice(0)) client.disconnect()
      await Promise.all(processes.map(async process => { await process.kill() }))
      rmSync(dir, { recursive: true, force: true })
      everyDir.delete(dir)
    }
  }
}

/** A connection to one process that gives up at once when it is down (no reconnects, no waiting). */
function plainClient (port: number, auth: Credentials): Redis {
  const { tls, ...credentials } = auth
  const redis = new Redis({ host: '127.0.0.1', port, ...credentials, ...(tls === true ? { tls: { ca: readFileSync(testTls.caFile) } } : {}), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 })
  redis.on('error', () => {})
  return redis
}

/** Runs `command` on a connection of its own, closed after. */
async function using<T> (redis: Redis, command: (redis: Redis) => Promise<T>): Promise<T> {
  try {
    return await command(redis)
  } finally {
    redis.disconnect()
  }
}

/** The answer of the first of `processes` that answers `command`. */
async function askFirst<T> (processes: TopologyProcess[], connectTo: (port: number) => Redis, command: (redis: Redis) => Promise<T>, what: string): Promise<T> {
  let last: unknown
  for (const process of processes) {
    try {
      return await using(connectTo(process.port), command)
    } catch (err) {
      last = err
    }
  }
  throw new Error(`no live ${what} answered: ${String(last)}`)
}

async function scanNode (client: Redis, pattern: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found
}

async function deleteOnNode (client: Redis, prefix: string): Promise<void> {
  // One key per DEL: on a Cluster node, the keys of one call must share a slot.
  await Promise.all((await scanNode(client, `${prefix}*`)).map(async key => await client.del(key)))
}

export interface TestCluster extends TopologyBase {
  readonly topology: 'cluster'
  /** Every node, masters and replicas (their roles change with failovers). */
  readonly nodes: readonly TopologyProcess[]
  /** The cluster's node timeout: how long a master may be silent before its replica takes over. */
  readonly nodeTimeoutMs: number
  /** The master that owns the slot of `key` now (asked of a live node). */
  masterOf: (key: string) => Promise<TopologyProcess>
  /** The ports of the current masters, from a live node's slot map. */
  masters: () => Promise<number[]>
  /** A replica of the master that owns the slot of `key` now. */
  replicaOf: (key: string) => Promise<TopologyProcess>
  /** The slot of a key (CLUSTER KEYSLOT, asked of a live node). */
  slotOf: (key: string) => Promise<number>
  /** Waits until every slot is served by a live master with an in-sync replica, and every live node says cluster_state:ok. */
  waitUntilHealthy: (timeoutMs?: number) => Promise<void>
  /** Waits until `key`'s slot is served by a live master other than `oldMaster`; resolves with it. */
  waitForNewMaster: (key: string, oldMaster: TopologyProcess, timeoutMs?: number) => Promise<TopologyProcess>
  /** Starts a killed node again: it rejoins as a replica. Waits until it is in sync and the cluster is healthy. */
  rejoin: (node: TopologyProcess) => Promise<void>
}

/**
 * A Redis Cluster of three masters with one replica each (`redis-server --cluster-enabled yes` ×6, then
 * `redis-cli --cluster create … --cluster-replicas 1`). Clients authenticate as the ACL user "broker";
 * the default user is off. The node timeout is short (2 s, production default 15 s) so failovers take
 * seconds, yet long enough that a loaded machine does not see false failures.
 */
export async function startRedisCluster (options: { nodeTimeoutMs?: number, tls?: boolean } = {}): Promise<TestCluster> {
  const base = topologyBase('cluster')
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 2000
  const tls = options.tls === true
  const auth = { username: 'broker', password: randomBytes(12).toString('hex'), tls }
  try {
    for (let i = 0; i < 6; i++) {
      const [port, busPort] = [await freePort(), await freePort()]
      const logFile = join(base.dir, `node-${port}.log`)
      base.processes.push(topologyProcess({
        role: 'node',
        port,
        auth,
        logFile,
        args: () => [
          ...(tls ? [...tlsArgs(port), '--tls-cluster', 'yes'] : ['--port', String(port)]),
          '--cluster-port', String(busPort), '--bind', '127.0.0.1',
          '--cluster-enabled', 'yes', '--cluster-config-file', join(base.dir, `nodes-${port}.conf`),
          '--cluster-node-timeout', String(nodeTimeoutMs),
          // A replica takes over whatever its last contact with the master, as tests kill masters at will.
          '--cluster-replica-validity-factor', '0',
          '--dir', base.dir, '--save', '', '--appendonly', 'no', '--logfile', logFile, '--loglevel', 'notice',
          '--user', 'default', 'off',
          '--user', auth.username, 'on', `>${auth.password}`, '~*', '&*', '+@all',
          '--masteruser', auth.username, '--masterauth', auth.password
        ]
      }))
    }
    await Promise.all(base.processes.map(async node => { await node.start() }))
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...base.processes.map(node => `127.0.0.1:${node.port}`),
      '--cluster-replicas', '1', '--cluster-yes', '--user', auth.username, '--pass', auth.password, '--no-auth-warning',
      ...(tls ? ['--tls', '--cacert', testTls.caFile] : [])], { encoding: 'utf8', timeout: 60_000 })
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed (${created.status}): ${created.stdout}\n${created.stderr}`)
  } catch (err) {
    await base.close()
    throw err
  }

  const connectTo = (port: number): Redis => plainClient(port, auth)
  const client = (port: number): Redis => {
    const redis = connectTo(port)
    base.clients.push(redis)
    return redis
  }
  const live = (): TopologyProcess[] => base.processes.filter(node => node.alive())
  /** One live node's answer to a command (the first live node that answers). */
  const ask = async <T>(command: (redis: Redis) => Promise<T>): Promise<T> => await askFirst(live(), connectTo, command, 'cluster node')
  type SlotRange = [number, number, [string, number, ...unknown[]], ...unknown[]]
  const slotMap = async (): Promise<SlotRange[]> => await ask(async redis => await redis.call('CLUSTER', 'SLOTS') as SlotRange[])
  const byPort = (port: number): TopologyProcess => {
    const node = base.processes.find(candidate => candidate.port === port)
    if (node === undefined) throw new Error(`no node on port ${port}`)
    return node
  }
  const slotOf = async (key: string): Promise<number> => await ask(async redis => Number(await redis.call('CLUSTER', 'KEYSLOT', key)))
  const rangeOf = async (key: string): Promise<SlotRange> => {
    const slot = await slotOf(key)
    const range = (await slotMap()).find(([from, to]) => slot >= from && slot <= to)
    if (range === undefined) throw new Error(`slot ${slot} is not served`)
    return range
  }
  const masterPortOf = async (key: string): Promise<number> => Number((await rangeOf(key))[2][1])
  const masterPorts = async (): Promise<number[]> => [...new Set((await slotMap()).map(range => Number(range[2][1])))]
  const waitUntilHealthy = async (timeoutMs = 30_000): Promise<void> => {
    await until('the cluster is healthy', async () => {
      const ranges = await slotMap()
      const covered = ranges.reduce((sum, [from, to]) => sum + to - from + 1, 0)
      if (covered !== 16384) return false
      if (!ranges.every(range => byPort(Number(range[2][1])).alive())) return false
      // Every master has a replica in sync, so the next failover has somewhere to go.
      const replicas = ranges.map(range => range[3] as [string, number] | undefined)
      if (replicas.some(replica => replica === undefined || !byPort(Number(replica[1])).alive())) return false
      const inSync = await Promise.all(replicas.map(async replica =>
        await using(connectTo(Number((replica as [string, number])[1])), async redis => (await redis.info('replication')).includes('master_link_status:up'))))
      if (!inSync.every(Boolean)) return false
      const states = await Promise.all(live().map(async node =>
        await using(connectTo(node.port), async redis => (await redis.call('CLUSTER', 'INFO') as string).includes('cluster_state:ok'))))
      return states.every(Boolean)
    }, timeoutMs, 200)
  }
  await waitUntilHealthy(60_000).catch(async (err: unknown) => { await base.close(); throw err })

  const seeds = base.processes.slice(0, 3).map(node => `127.0.0.1:${node.port}`)
  return {
    topology: 'cluster',
    dir: base.dir,
    nodes: base.processes,
    nodeTimeoutMs,
    connection: {
      topology: 'cluster',
      nodes: base.processes.slice(0, 3).map(node => ({ host: '127.0.0.1', port: node.port })),
      username: auth.username,
      password: auth.password,
      tls: tls ? { ca: readFileSync(testTls.caFile, 'utf8') } : undefined
    },
    env: { REDIS_URL: '', REDIS_CLUSTER_NODES: seeds.join(','), REDIS_USERNAME: auth.username, REDIS_PASSWORD: auth.password, ...tlsEnv(tls) },
    client,
    masterOf: async key => byPort(await masterPortOf(key)),
    masters: masterPorts,
    replicaOf: async key => {
      const replica = (await rangeOf(key))[3] as [string, number] | undefined
      if (replica === undefined) throw new Error('the slot has no replica')
      return byPort(Number(replica[1]))
    },
    slotOf,
    waitUntilHealthy,
    waitForNewMaster: async (key, oldMaster, timeoutMs = 30_000) => {
      let port = oldMaster.port
      await until('a replica took over the slot', async () => {
        port = await masterPortOf(key)
        return port !== oldMaster.port && byPort(port).alive()
      }, timeoutMs, 50)
      return byPort(port)
    },
    rejoin: async node => {
      await node.start()
      await until('the rejoined node is an in-sync replica', async () => await using(connectTo(node.port), async redis => {
        const info = await redis.info('replication')
        return info.includes('role:slave') && info.includes('master_link_status:up')
      }), 30_000, 200)
      await waitUntilHealthy()
    },
    findKeys: async pattern => (await Promise.all((await masterPorts()).map(async port => await using(connectTo(port), async redis => await scanNode(redis, pattern))))).flat(),
    deleteKeys: async prefix => {
      await Promise.all((await masterPorts()).map(async port => { await using(connectTo(port), async redis => { await deleteOnNode(redis, prefix) }) }))
    },
    close: base.close
  }
}

export interface TestSentinel extends TopologyBase {
  readonly topology: 'sentinel'
  readonly masterName: string
  /** The two data nodes (their roles change with failovers). */
  readonly nodes: readonly TopologyProcess[]
  readonly sentinels: readonly TopologyProcess[]
  readonly downAfterMs: number
  /** The data node the sentinels name as master now. */
  master: () => Promise<TopologyProcess>
  /** Waits until the sentinels name a live master other than `oldMaster`; resolves with it. */
  waitForNewMaster: (oldMaster: TopologyProcess, timeoutMs?: number) => Promise<TopologyProcess>
  /** Waits until the master has an in-sync replica and every sentinel sees it and the other two sentinels. */
  waitUntilHealthy: (timeoutMs?: number) => Promise<void>
  /** Starts a killed data node again as a replica of the current master; waits until healthy. */
  rejoin: (node: TopologyProcess) => Promise<void>
}

/**
 * A Sentinel group: one master, one replica, three sentinels with quorum 2 (`redis-sentinel`). Data nodes
 * require a password (REDIS_PASSWORD), sentinels another (REDIS_SENTINEL_PASSWORD). Sentinels call a
 * master down after 2 s of silence (production default 30 s), for the same reason as the Cluster's timeout.
 */
export async function startRedisSentinel (options: { downAfterMs?: number, tls?: boolean } = {}): Promise<TestSentinel> {
  const tls = options.tls === true
  const base = topologyBase('sentinel')
  const masterName = 'cbmaster'
  const downAfterMs = options.downAfterMs ?? 2000
  const nodeAuth = { password: randomBytes(12).toString('hex'), tls }
  const sentinelAuth = { password: randomBytes(12).toString('hex'), tls }
  const nodes: TopologyProcess[] = []
  const sentinels: TopologyProcess[] = []
  // Whom each data node replicates when (re)started; undefined: it starts as the master.
  const replicaOf = new Map<number, number | undefined>()
  try {
    const [masterPort, replicaPort] = [await freePort(), await freePort()]
    replicaOf.set(masterPort, undefined)
    replicaOf.set(replicaPort, masterPort)
    for (const port of [masterPort, replicaPort]) {
      const logFile = join(base.dir, `node-${port}.log`)
      nodes.push(topologyProcess({
        role: 'node',
        port,
        auth: nodeAuth,
        logFile,
        args: () => {
          const upstream = replicaOf.get(port)
          return [
            ...(tls ? tlsArgs(port) : ['--port', String(port)]),
            '--bind', '127.0.0.1', '--dir', base.dir, '--save', '', '--appendonly', 'no',
            '--logfile', logFile, '--loglevel', 'notice',
            '--requirepass', nodeAuth.password, '--masterauth', nodeAuth.password,
            ...(upstream === undefined ? [] : ['--replicaof', '127.0.0.1', String(upstream)])
          ]
        }
      }))
    }
    await nodes[0]?.start()
    await nodes[1]?.start()
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const file = join(base.dir, `sentinel-${port}.conf`)
      const logFile = join(base.dir, `sentinel-${port}.log`)
      // Sentinel rewrites its config file as it learns the topology: it must be its own, and writable.
      writeFileSync(file, [
        ...(tls
          ? ['port 0', `tls-port ${port}`, `tls-cert-file ${testTls.certFile}`, `tls-key-file ${testTls.keyFile}`, `tls-ca-cert-file ${testTls.caFile}`, 'tls-auth-clients no', 'tls-replication yes']
          : [`port ${port}`]),
        'bind 127.0.0.1', `dir ${base.dir}`, `logfile ${logFile}`,
        `requirepass ${sentinelAuth.password}`, `sentinel sentinel-pass ${sentinelAuth.password}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 2`,
        `sentinel auth-pass ${masterName} ${nodeAuth.password}`,
        `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
        ''
      ].join('\n'))
      sentinels.push(topologyProcess({ role: 'sentinel', port, auth: sentinelAuth, logFile, args: () => [file] }))
    }
    await Promise.all(sentinels.map(async sentinel => { await sentinel.start() }))
    base.processes.push(...nodes, ...sentinels)
  } catch (err) {
    base.processes.push(...nodes, ...sentinels)
    await base.close()
    throw err
  }

  const connectTo = (port: number): Redis => plainClient(port, sentinels.some(sentinel => sentinel.port === port) ? sentinelAuth : nodeAuth)
  const client = (port: number): Redis => {
    const redis = connectTo(port)
    base.clients.push(redis)
    return redis
  }
  const askSentinel = async <T>(command: (redis: Redis) => Promise<T>): Promise<T> => await askFirst(sentinels.filter(sentinel => sentinel.alive()), connectTo, command, 'sentinel')
  const byPort = (port: number): TopologyProcess => {
    const node = nodes.find(candidate => candidate.port === port)
    if (node === undefined) throw new Error(`no data node on port ${port}`)
    return node
  }
  const masterPort = async (): Promise<number> => {
    const [, port] = await askSentinel(async redis => await redis.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName) as [string, string])
    return Number(port)
  }
  const waitUntilHealthy = async (timeoutMs = 30_000): Promise<void> => {
    await until('the sentinel group is healthy', async () => {
      const master = byPort(await masterPort())
      if (!master.alive()) return false
      const info = await using(connectTo(master.port), async redis => await redis.info('replication'))
      if (!/connected_slaves:1\b/.test(info) || !/slave0:.*state=online/.test(info)) return false
      const views = await Promise.all(sentinels.map(async sentinel => await using(connectTo(sentinel.port), async view => {
        const replicas = await view.call('SENTINEL', 'REPLICAS', masterName) as string[][]
        const others = await view.call('SENTINEL', 'SENTINELS', masterName) as string[][]
        const [, port] = await view.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName) as [string, string]
        const flags = (fields: string[]): string => fields[fields.indexOf('flags') + 1] ?? ''
        const healthyReplicas = replicas.filter(fields => !flags(fields).includes('down') && !flags(fields).includes('disconnected'))
        return Number(port) === master.port && healthyReplicas.length === 1 && others.length === 2 && others.every(fields => !flags(fields).includes('down'))
      })))
      return views.every(Boolean)
    }, timeoutMs, 200)
  }
  await waitUntilHealthy(60_000).catch(async (err: unknown) => { await base.close(); throw err })

  return {
    topology: 'sentinel',
    dir: base.dir,
    masterName,
    nodes,
    sentinels,
    downAfterMs,
    connection: {
      topology: 'sentinel',
      sentinels: sentinels.map(sentinel => ({ host: '127.0.0.1', port: sentinel.port })),
      masterName,
      sentinelPassword: sentinelAuth.password,
      username: undefined,
      password: nodeAuth.password,
      tls: tls ? { ca: readFileSync(testTls.caFile, 'utf8') } : undefined
    },
    env: {
      REDIS_URL: '',
      REDIS_SENTINELS: sentinels.map(sentinel => `127.0.0.1:${sentinel.port}`).join(','),
      REDIS_SENTINEL_MASTER: masterName,
      REDIS_SENTINEL_PASSWORD: sentinelAuth.password,
      REDIS_PASSWORD: nodeAuth.password,
      ...tlsEnv(tls)
    },
    client,
    master: async () => byPort(await masterPort()),
    waitForNewMaster: async (oldMaster, timeoutMs = 30_000) => {
      let port = oldMaster.port
      await until('the sentinels promoted the replica', async () => {
        port = await masterPort()
        return port !== oldMaster.port
      }, timeoutMs, 50)
      return byPort(port)
    },
    waitUntilHealthy,
    rejoin: async node => {
      replicaOf.set(node.port, await masterPort())
      await node.start()
      await waitUntilHealthy()
    },
    findKeys: async pattern => await using(connectTo(await masterPort()), async redis => await scanNode(redis, pattern)),
    deleteKeys: async prefix => { await using(connectTo(await masterPort()), async redis => { await deleteOnNode(redis, prefix) }) },
    close: base.close
  }
}

export type TestTopology = TestCluster | TestSentinel

/** REDIS_TLS and REDIS_CACERT for a topology started with `tls`. */
function tlsEnv (tls: boolean): Record<string, string> {
  return tls ? { REDIS_TLS: 'true', REDIS_CACERT: testTls.caFile } : {}
}

export interface TestTlsNode {
  readonly port: number
  readonly password: string
  /** Config.redis without the prefix, trusting the test CA (or `ca`). */
  connection: (ca?: string) => Extract<RedisConnectionConfig, { topology: 'single' }>
  close: () => Promise<void>
}

/** One redis-server that speaks only TLS (the test certificate) and requires a password. */
export async function startTlsRedis (): Promise<TestTlsNode> {
  const base = topologyBase('tls')
  const port = await freePort()
  const auth = { password: randomBytes(12).toString('hex'), tls: true }
  const logFile = join(base.dir, `node-${port}.log`)
  const node = topologyProcess({
    role: 'node',
    port,
    auth,
    logFile,
    args: () => [...tlsArgs(port), '--bind', '127.0.0.1', '--dir', base.dir, '--save', '', '--appendonly', 'no', '--logfile', logFile, '--requirepass', auth.password]
  })
  base.processes.push(node)
  try {
    await node.start()
  } catch (err) {
    await base.close()
    throw err
  }
  return {
    port,
    password: auth.password,
    connection: (ca = readFileSync(testTls.caFile, 'utf8')) => ({ topology: 'single', url: `redis://127.0.0.1:${port}`, username: undefined, password: auth.password, tls: { ca } }),
    close: base.close
  }
}
