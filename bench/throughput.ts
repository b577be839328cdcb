/**
 * Token throughput (issue 12): the broker's hot path (GET /v1/credentials/{id}/token answered from the
 * local cache) against a bare Fastify route that reads the Authorization header and sends the same body
 * and the same response headers (bench/bare-server.ts).
 *
 * Method, and why:
 * - Both servers are compiled (`npm run build` → dist/main.js, what the image runs; the bare server with
 *   the same compiler) and run as their own processes, each pinned to core 0 with `taskset`; the load
 *   generator runs pinned to core 1. On a 2-core machine that keeps the generator's CPU out of the server's.
 * - Saturated load: `wrk -t1 -c50` (Debian's wrk; the Authorization header set by a Lua script). The figure
 *   that compares is server CPU time per request: utime + stime of the server process from /proc/<pid>/stat
 *   before and after each run, divided by the requests wrk completed. Also req/s and wrk's latency percentiles.
 * - Rounds are interleaved (bare, API key, JWT; then rotated) and each figure is the median of its rounds.
 *   The CPU ratio is given two ways: the ratio of the medians, and the median of each round's own ratio
 *   (`cpuRatioPerRound`: bare and broker measured side by side, a minute apart at most). On this shared
 *   machine a slow spell can take two of one target's runs and none of the other's, which moves the first
 *   figure by ±0.2; the paired one compares runs that shared the machine's state. The goal is judged on the
 *   paired figure, and both are reported. 7 rounds of 6 s by default.
 * - Latency at a fixed 2,000 req/s: an open-loop generator in its own process, pinned to core 1
 *   (bench/paced-load.ts: requests due at fixed times whatever the server does, on 50 kept-alive sockets;
 *   wrk2 is not packaged here), broker and bare in the same run, median of the rounds.
 * - The broker runs with Redis, LOG_LEVEL=info, its audit trail on stdout (to /dev/null), one Kivra
 *   credential whose 8 h token is minted once at start (every measured request is a local-cache hit) and a
 *   rate limit above the bench's rate (the limiter still counts every request).
 * - The broker runs as the Deployment runs it: with the image's NODE_OPTIONS (Dockerfile) and inside a
 *   memory cgroup of the Deployment's limit, from which Node sizes the rest of V8's heap
 *   (bench/memory-cgroup.ts; without root or cgroups it runs unlimited). Both recorded in `method`.
 * - RSS: VmRSS of the broker sampled every 100 ms during every run (the peak), and VmHWM at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { stringify as toYaml } from 'yaml'
import { sha256Hex, tempFile } from '../test/support/app.js'
import { freePort } from '../test/support/ports.js'
import { startBroker, type BrokerProcess } from '../test/support/process.js'
import { startKivraStandIn } from '../test/support/providers/index.js'
import { asDeployed } from './memory-cgroup.js'
import { benchRedis } from './redis.js'

/** bareJwt: the bare route sent the JWT caller's request (same Authorization header, so the same bytes to parse). */
type Target = 'bare' | 'bareJwt' | 'broker' | 'brokerJwt'

export interface SaturatedFigures {
  requestsPerSecond: number
  /** Server CPU (user + system) per completed request, in microseconds. */
  cpuUsPerRequest: number
  p50Ms: number
  p99Ms: number
  non2xx: number
}

export interface PacedFigures { p50Ms: number, p99Ms: number, requests: number, non2xx: number, errors: number }

export interface ThroughputResult {
  bench: 'throughput'
  at: string
  node: string
  machine: { cpus: number, shared: boolean, loadAverageAtStart: number[] }
  method: { serverCore: number, loadCore: number, brokerNodeOptions: string | undefined, brokerMemoryLimit: string, generator: string, connections: number, durationSeconds: number, rounds: number, pacedRounds: number, pacedGenerator: string, pacedRate: number, pacedSeconds: number }
  bodyBytes: { broker: number, bare: number }
  runs: Array<{ round: number, target: Target } & SaturatedFigures>
  pacedRuns: Array<{ round: number, target: Target } & PacedFigures>
  /** Medians over the rounds. */
  saturated: Record<Target, SaturatedFigures>
  paced: Record<Target, PacedFigures>
  /** CPU per request, bare ÷ broker (higher is better; 1 = as cheap as the bare route); JWT against bareJwt: ratio of the medians. */
  cpuRatio: { broker: number, brokerJwt: number }
  /** The same, as the median of each round's own ratio (bare and broker of one round, run side by side). */
  cpuRatioPerRound: { broker: number, brokerJwt: number, rounds: Array<{ round: number, broker: number, brokerJwt: number }> }
  /** req/s, broker ÷ bare. */
  throughputRatio: { broker: number, brokerJwt: number }
  /** Paced median latency, broker minus bare (ms). */
  pacedMedianOverBareMs: { broker: number, brokerJwt: number }
  rssMb: { brokerPeak: number, brokerHwm: number, barePeak: number }
  goal: { cpuRatio: number, cpuRatioJwt: number, pacedMedianOverBareMs: number, rssMb: number }
  met: { cpuRatio: boolean, cpuRatioJwt: boolean, pacedMedian: boolean, rss: boolean }
  mintsDuringBench: number
}

const root = fileURLToPath(new URL('..', import.meta.url))
const serverCore = 0
const loadCore = 1
const clockTicksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

const round = (value: number, digits = 3): number => Number(value.toFixed(digits))
const mb = (kb: number): number => round(kb / 1024, 1)
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

function procStatusKb (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match?.[1] === undefined ? 0 : Number(match[1])
}

/** utime + stime of a process (all its threads), in microseconds. */
function cpuMicros (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 1e6 / clockTicksPerSecond
}

/** Pins every thread of a running process to one core (threads created later inherit it). */
function pin (pid: number, core: number): void {
  const result = spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`taskset failed: ${result.stderr}`)
}

/** Runs a command to its end without blocking this process (the RSS sampler keeps running). */
async function run (command: string, args: string[]): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    child.once('error', reject)
    child.once('close', status => { resolve({ status, stdout, stderr }) })
  })
}

/** wrk's latency figures ("1.23ms", "456.78us", "1.02s") in ms. */
function wrkMs (text: string | undefined): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text ?? '')
  if (match === null) return Number.NaN
  const value = Number(match[1])
  return round(match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value)
}

interface LoadTarget { url: string, authorization: string, pid: number }

/** One saturated wrk run pinned to the load core; CPU of the server from /proc around it. */
async function saturate (target: LoadTarget, connections: number, seconds: number): Promise<SaturatedFigures> {
  const script = tempFile('auth.lua', `wrk.headers["Authorization"] = ${JSON.stringify(target.authorization)}\n`)
  const before = cpuMicros(target.pid)
  const result = await run('taskset', ['-c', String(loadCore), 'wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, target.url])
  const cpu = cpuMicros(target.pid) - before
  if (result.status !== 0) throw new Error(`wrk failed: ${result.stderr}`)
  const out = result.stdout
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  return {
    requestsPerSecond: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0)),
    cpuUsPerRequest: round(cpu / Math.max(1, requests), 2),
    p50Ms: wrkMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1]),
    p99Ms: wrkMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  }
}

/** One fixed-rate run: bench/paced-load.ts (compiled) as its own process on the load core. */
async function pace (target: LoadTarget, rate: number, seconds: number, connections: number): Promise<PacedFigures> {
  const result = await run('taskset', ['-c', String(loadCore), process.execPath, `${root}bench/.build/paced-load.js`, target.url, target.authorization, String(rate), String(seconds), String(connections)])
  if (result.status !== 0) throw new Error(`paced load failed: ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as PacedFigures
}

/** Compiles the broker (`npm run build`) and the bench's own processes with the same compiler and target. */
export function compileServers (): void {
  const tsc = `${root}node_modules/typescript/bin/tsc`
  const run = (args: string[]): void => {
    const result = spawnSync(process.execPath, [tsc, ...args], { cwd: root, encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`tsc ${args.join(' ')} failed: ${result.stdout}${result.stderr}`)
  }
  run(['-p', 'tsconfig.build.json'])
  spawnSync(process.execPath, ['-e', "require('node:fs').cpSync('src/embedded', 'dist/embedded', { recursive: true, filter: path => !path.endsWith('.ts') })"], { cwd: root })
  run(['bench/bare-server.ts', 'bench/paced-load.ts', '--outDir', 'bench/.build', '--target', 'ES2023', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--skipLibCheck', '--strict'])
}

/** Starts the compiled bare server as its own process. */
export async function startBare (body: string, headers: Array<[string, string]>): Promise<{ url: string, pid: number, stop: () => Promise<void> }> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [`${root}bench/.build/bare-server.js`], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), BARE_BODY: body, BARE_HEADERS: JSON.stringify(headers) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('bare server did not start within 20 s')) }, 20_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { if (chunk.includes('listening')) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`bare server exited with ${String(code)}`)) })
  })
  return {
    url: `http://127.0.0.1:${port}/v1/credentials/kivra/token?min_ttl=60`,
    pid: child.pid as number,
    stop: async () => { if (child.exitCode === null) child.kill('SIGTERM'); await exited }
  }
}

/** The headers the bare route sends: the broker's, in its order, with fixed values of the same length. */
function bareHeadersFrom (response: Response): Array<[string, string]> {
  const skip = new Set(['content-length', 'content-type', 'date', 'connection', 'keep-alive'])
  return [...response.headers.entries()].filter(([name]) => !skip.has(name)).map(([name, value]) => [name, name === 'x-request-id' ? '0'.repeat(value.length) : value])
}

async function jwtCaller (subject: string): Promise<{ jwt: string, jwksFile: string, issuer: string, audience: string }> {
  const issuer = 'https://kubernetes.default.svc'
  const audience = 'credential-broker'
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = { ...await exportJWK(publicKey), kid: 'bench', alg: 'ES256', use: 'sig' }
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'bench' })
    .setIssuer(issuer).setAudience(audience).setSubject(subject).setIssuedAt().setExpirationTime('2h').sign(privateKey)
  return { jwt, jwksFile: tempFile('jwks.json', JSON.stringify({ keys: [jwk] })), issuer, audience }
}

export interface ThroughputOptions { connections?: number, durationSeconds?: number, rounds?: number, pacedRate?: number, pacedSeconds?: number }

export async function runThroughput (options: ThroughputOptions = {}): Promise<ThroughputResult> {
  const connections = options.connections ?? 50
  const durationSeconds = options.durationSeconds ?? 6
  const rounds = options.rounds ?? 7
  const pacedRounds = Math.min(rounds, 3)
  const pacedRate = options.pacedRate ?? 2000
  const pacedSeconds = options.pacedSeconds ?? 8
  const apiKey = `bench-${randomBytes(16).toString('hex')}`
  const subject = 'system:serviceaccount:bench:load'
  const caller = await jwtCaller(subject)
  const loadAverageAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)

  // The image's NODE_OPTIONS in a memory cgroup of the Deployment's limit (bench/memory-cgroup.ts).
  const deployed = asDeployed()
  const redis = await benchRedis()
  const kivra = await startKivraStandIn()
  let broker: BrokerProcess | undefined
  let bare: Awaited<ReturnType<typeof startBare>> | undefined
  try {
    compileServers()
    broker = await startBroker({
      // Above anything the bench reaches (one caller drives all the load); every request is still counted.
      RATE_LIMIT_PER_MINUTE: '100000000',
      LOG_LEVEL: 'info',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      CREDENTIALS_FILE: tempFile('credentials.yaml', toYaml({
        callers: [{ id: 'bench-key', api_key_sha256: sha256Hex(apiKey) }, { id: 'bench-jwt', jwt_subject: subject }],
        caller_jwt: { issuer: caller.issuer, audience: caller.audience, jwks_file: caller.jwksFile, algorithms: ['ES256'] },
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, allowed_callers: ['bench-key', 'bench-jwt'] }]
      })),
      SECRETS_FILE: tempFile('secrets.json', JSON.stringify({ 'secret/kivra': { ...kivra.secret } })),
      ...deployed.env
    }, { stdout: 'ignore', built: true, ...deployed.launcher })
    const brokerPid = broker.child.pid as number
    pin(brokerPid, serverCore)
    const tokenUrl = `${broker.url}/v1/credentials/kivra/token?min_ttl=60`
    const first = await fetch(tokenUrl, { headers: { authorization: `Bearer ${apiKey}` } })
    const answer = await first.text()
    if (first.status !== 200) throw new Error(`broker answered ${first.status} to the first token request: ${answer.slice(0, 200)}`)
    const jwtCheck = await fetch(tokenUrl, { headers: { authorization: `Bearer ${caller.jwt}` } })
    if (jwtCheck.status !== 200) throw new Error(`broker refused the bench JWT caller (${jwtCheck.status})`)
    await jwtCheck.arrayBuffer()

    const parsed = JSON.parse(answer) as { access_token: string }
    const bareBody = JSON.stringify({ ...parsed, access_token: 'x'.repeat(parsed.access_token.length) })
    bare = await startBare(bareBody, bareHeadersFrom(first))
    pin(bare.pid, serverCore)
    const bareAnswer = await (await fetch(bare.url, { headers: { authorization: `Bearer ${apiKey}` } })).text()

    const targets: Record<Target, LoadTarget> = {
      bare: { url: bare.url, authorization: `Bearer ${apiKey}`, pid: bare.pid },
      bareJwt: { url: bare.url, authorization: `Bearer ${caller.jwt}`, pid: bare.pid },
      broker: { url: tokenUrl, authorization: `Bearer ${apiKey}`, pid: brokerPid },
      brokerJwt: { url: tokenUrl, authorization: `Bearer ${caller.jwt}`, pid: brokerPid }
    }
    let brokerPeakKb = 0
    let barePeakKb = 0
    const sampler = setInterval(() => {
      brokerPeakKb = Math.max(brokerPeakKb, procStatusKb(brokerPid, 'VmRSS'))
      barePeakKb = Math.max(barePeakKb, procStatusKb(targets.bare.pid, 'VmRSS'))
    }, 100)
    const mintsBefore = kivra.mints
    const order: Target[] = ['bare', 'broker', 'bareJwt', 'brokerJwt']
    const runs: ThroughputResult['runs'] = []
    const pacedRuns: ThroughputResult['pacedRuns'] = []
    try {
      // Warm-up: JIT, connections, the JWT verification cache.
      for (const target of order) await saturate(targets[target], connections, 3)
      for (let r = 0; r < rounds; r++) {
        const rotated = [...order.slice(r % order.length), ...order.slice(0, r % order.length)]
        for (const target of rotated) {
          console.log(`throughput: round ${r + 1}, ${target}, ${durationSeconds} s saturated`)
          runs.push({ round: r + 1, target, ...await saturate(targets[target], connections, durationSeconds) })
          brokerPeakKb = Math.max(brokerPeakKb, procStatusKb(brokerPid, 'VmRSS'))
        }
      }
      for (let r = 0; r < pacedRounds; r++) {
        for (const target of order) {
          console.log(`throughput: round ${r + 1}, ${target}, ${pacedSeconds} s at ${pacedRate} req/s`)
          pacedRuns.push({ round: r + 1, target, ...await pace(targets[target], pacedRate, pacedSeconds, connections) })
          brokerPeakKb = Math.max(brokerPeakKb, procStatusKb(brokerPid, 'VmRSS'))
        }
      }
    } finally {
      clearInterval(sampler)
    }
    const saturated = Object.fromEntries(order.map(target => {
      const of = runs.filter(run => run.target === target)
      const pick = (field: keyof SaturatedFigures): number => round(median(of.map(run => run[field])), 3)
      return [target, { requestsPerSecond: Math.round(pick('requestsPerSecond')), cpuUsPerRequest: pick('cpuUsPerRequest'), p50Ms: pick('p50Ms'), p99Ms: pick('p99Ms'), non2xx: of.reduce((sum, run) => sum + run.non2xx, 0) }]
    })) as Record<Target, SaturatedFigures>
    const paced = Object.fromEntries(order.map(target => {
      const of = pacedRuns.filter(run => run.target === target)
      return [target, { p50Ms: round(median(of.map(run => run.p50Ms))), p99Ms: round(median(of.map(run => run.p99Ms))), requests: of.reduce((sum, run) => sum + run.requests, 0), non2xx: of.reduce((sum, run) => sum + run.non2xx, 0), errors: of.reduce((sum, run) => sum + run.errors, 0) }]
    })) as Record<Target, PacedFigures>
    const cpuRatio = { broker: round(saturated.bare.cpuUsPerRequest / saturated.broker.cpuUsPerRequest, 2), brokerJwt: round(saturated.bareJwt.cpuUsPerRequest / saturated.brokerJwt.cpuUsPerRequest, 2) }
    const perRound = Array.from({ length: rounds }, (_, index) => {
      const cpuOf = (target: Target): number => runs.find(run => run.round === index + 1 && run.target === target)?.cpuUsPerRequest ?? Number.NaN
      return { round: index + 1, broker: round(cpuOf('bare') / cpuOf('broker'), 2), brokerJwt: round(cpuOf('bareJwt') / cpuOf('brokerJwt'), 2) }
    })
    const cpuRatioPerRound = { broker: round(median(perRound.map(entry => entry.broker)), 2), brokerJwt: round(median(perRound.map(entry => entry.brokerJwt)), 2), rounds: perRound }
    const pacedMedianOverBareMs = { broker: round(paced.broker.p50Ms - paced.bare.p50Ms), brokerJwt: round(paced.brokerJwt.p50Ms - paced.bareJwt.p50Ms) }
    const rssMb = { brokerPeak: mb(brokerPeakKb), brokerHwm: mb(procStatusKb(brokerPid, 'VmHWM')), barePeak: mb(barePeakKb) }
    const goal = { cpuRatio: 0.8, cpuRatioJwt: 0.75, pacedMedianOverBareMs: 0.5, rssMb: 150 }
    return {
      bench: 'throughput',
      at: new Date().toISOString(),
      node: process.version,
      machine: { cpus: (await import('node:os')).cpus().length, shared: true, loadAverageAtStart },
      method: { serverCore, loadCore, brokerNodeOptions: deployed.recorded.nodeOptions, brokerMemoryLimit: deployed.recorded.memoryLimit, generator: `wrk -t1 -c${connections} (Lua script sets Authorization)`, connections, durationSeconds, rounds, pacedRounds, pacedGenerator: 'open loop, own process (bench/paced-load.ts)', pacedRate, pacedSeconds },
      bodyBytes: { broker: Buffer.byteLength(answer), bare: Buffer.byteLength(bareAnswer) },
      runs,
      pacedRuns,
      saturated,
      paced,
      cpuRatio,
      cpuRatioPerRound,
      throughputRatio: { broker: round(saturated.broker.requestsPerSecond / saturated.bare.requestsPerSecond, 2), brokerJwt: round(saturated.brokerJwt.requestsPerSecond / saturated.bareJwt.requestsPerSecond, 2) },
      pacedMedianOverBareMs,
      rssMb,
      goal,
      met: { cpuRatio: cpuRatioPerRound.broker >= goal.cpuRatio, cpuRatioJwt: cpuRatioPerRound.brokerJwt >= goal.cpuRatioJwt, pacedMedian: pacedMedianOverBareMs.broker <= goal.pacedMedianOverBareMs, rss: rssMb.brokerHwm <= goal.rssMb },
      mintsDuringBench: kivra.mints - mintsBefore
    }
  } finally {
    await bare?.stop()
    await broker?.stop('SIGTERM')
    deployed.remove()
    await kivra.close()
    await redis.stop()
  }
}

/** Shorter runs for a quick look (BENCH_ROUNDS, BENCH_SECONDS); the defaults are what the README reports. */
export function throughputOptionsFromEnv (env: NodeJS.ProcessEnv = process.env): ThroughputOptions {
  return {
    ...(env.BENCH_ROUNDS === undefined ? {} : { rounds: Number(env.BENCH_ROUNDS) }),
    ...(env.BENCH_SECONDS === undefined ? {} : { durationSeconds: Number(env.BENCH_SECONDS), pacedSeconds: Number(env.BENCH_SECONDS) })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runThroughput(throughputOptionsFromEnv())
  writeFileSync(new URL('results/throughput.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
}
