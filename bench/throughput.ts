/**
 * Token throughput: the broker's hot path (GET /v1/credentials/{id}/token answered from the local cache)
 * against a bare Fastify route answering a JSON body of the same size, both loaded the same way.
 *
 * Method, and why:
 * - Each server under test is its own process (the broker is exactly what `npm start` runs), so the load
 *   generator (autocannon, in this process) never shares an event loop with the server it measures.
 * - The broker runs with Redis (REDIS_URL or a spawned redis-server), an encryption key, LOG_LEVEL=info
 *   (the production default, so the one audit line per token is part of the cost; the log goes to
 *   /dev/null) and one Kivra credential whose 8 h token is minted once during warm-up: every measured
 *   request is a local-cache hit.
 * - The same broker also runs at LOG_LEVEL=warn (no request log lines, no audit line), as a third
 *   target, to show what logging costs on this path.
 * - Two kinds of caller: an API key (one SHA-256 per request) and a JWT (ES256, verified once, then
 *   remembered by hash until it expires).
 * - The machine is shared and noisy, so only ratios measured in the same run mean something. Runs are
 *   interleaved (bare, broker, broker-jwt, bare, broker-jwt, broker, bare) and each side's figure is the
 *   mean of its runs; ratio = broker req/s ÷ bare req/s.
 * - Latency percentiles come from every response's own time (autocannon's `response` event, sub-ms
 *   resolution), not from autocannon's histogram, whose resolution is 1 ms. With 50 connections kept
 *   busy, latency is mostly queueing (Little's law: 50 ÷ req/s), so a second, paced run at a fixed rate
 *   well below saturation shows the service latency itself.
 * - Peak RSS: VmRSS of the server process from /proc/<pid>/status, sampled every 100 ms during each run
 *   (its maximum), and VmHWM (the kernel's high-water mark over the process's life) at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { stringify as toYaml } from 'yaml'
import { sha256Hex, tempFile } from '../test/support/app.js'
import { freePort } from '../test/support/ports.js'
import { startBroker, type BrokerProcess } from '../test/support/process.js'
import { startKivraStandIn } from '../test/support/providers/index.js'
import { benchRedis } from './redis.js'

export interface LoadFigures {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  /** Highest VmRSS of the server process seen during the run. */
  peakRssMb: number
  non2xx: number
  errors: number
}

export interface ThroughputResult {
  bench: 'throughput'
  connections: number
  durationSeconds: number
  warmupSeconds: number
  bodyBytes: { broker: number, bare: number }
  /** Every measured run, in the order it ran. */
  runs: Array<{ target: Target } & LoadFigures>
  /** Means over each target's runs. */
  bare: LoadFigures
  broker: LoadFigures
  brokerJwt: LoadFigures
  /** The same broker at LOG_LEVEL=warn: no request log lines and no audit line. Shows what logging costs. */
  brokerWarn: LoadFigures
  ratio: { broker: number, brokerJwt: number, brokerWarn: number }
  /** Latency at a fixed, unsaturated rate (same connections), where queueing does not dominate. */
  paced: { requestsPerSecond: number, bare: LoadFigures, broker: LoadFigures, brokerJwt: LoadFigures, brokerWarn: LoadFigures }
  /** Kernel high-water mark of resident memory over each server process's whole life (MB). */
  vmHwmMb: { broker: number, brokerWarn: number, bare: number }
  goal: { ratio: number, p99Ms: number }
  met: { ratio: boolean, brokerJwtRatio: boolean, p99Saturated: boolean, p99Paced: boolean }
  mintsDuringBench: number
}

type Target = 'bare' | 'broker' | 'broker-jwt' | 'broker-warn'

const root = fileURLToPath(new URL('..', import.meta.url))

export function procStatusKb (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match?.[1] === undefined ? 0 : Number(match[1])
  } catch {
    return 0 // not Linux, or the process is gone
  }
}

const mb = (kb: number): number => Number((kb / 1024).toFixed(1))
const round = (value: number, digits = 3): number => Number(value.toFixed(digits))

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number
}

export interface LoadTarget { url: string, headers: Record<string, string>, pid: number }

/** One autocannon run; latencies from each response, RSS sampled from /proc while it runs. */
export async function load (target: LoadTarget, options: { connections: number, durationSeconds: number, overallRate?: number }): Promise<LoadFigures> {
  const latencies: number[] = []
  let peakRssKb = procStatusKb(target.pid, 'VmRSS')
  const sampler = setInterval(() => { peakRssKb = Math.max(peakRssKb, procStatusKb(target.pid, 'VmRSS')) }, 100)
  try {
    const result = await new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon({
        url: target.url,
        headers: target.headers,
        connections: options.connections,
        duration: options.durationSeconds,
        ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate })
      }, (err: unknown, finished: autocannon.Result) => { if (err !== null && err !== undefined) reject(err as Error); else resolve(finished) })
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
      })
    })
    const sorted = Float64Array.from(latencies).sort()
    return {
      // Only 2xx answers count: a 429 or 503 is not a token served.
      requestsPerSecond: Math.round(result['2xx'] / result.duration),
      p50Ms: round(percentile(sorted, 0.5)),
      p99Ms: round(percentile(sorted, 0.99)),
      peakRssMb: mb(peakRssKb),
      non2xx: result.non2xx,
      errors: result.errors
    }
  } finally {
    clearInterval(sampler)
  }
}

export function mean (figures: LoadFigures[]): LoadFigures {
  const avg = (pick: (f: LoadFigures) => number, digits: number): number => round(figures.reduce((sum, f) => sum + pick(f), 0) / figures.length, digits)
  return {
    requestsPerSecond: Math.round(avg(f => f.requestsPerSecond, 0)),
    p50Ms: avg(f => f.p50Ms, 3),
    p99Ms: avg(f => f.p99Ms, 3),
    peakRssMb: Math.max(...figures.map(f => f.peakRssMb)),
    non2xx: figures.reduce((sum, f) => sum + f.non2xx, 0),
    errors: figures.reduce((sum, f) => sum + f.errors, 0)
  }
}

/**
 * Compiles what the servers under test run, as the Docker image does: the broker with `npm run build`
 * (dist/), the bare server with the same compiler and target (bench/.build/). Neither runs through tsx,
 * whose on-the-fly transform adds a helper call to every function created (closures per request included).
 */
export function compileServers (): void {
  const tsc = `${root}node_modules/typescript/bin/tsc`
  const run = (args: string[]): void => {
    const result = spawnSync(process.execPath, [tsc, ...args], { cwd: root, encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`tsc ${args.join(' ')} failed: ${result.stdout}${result.stderr}`)
  }
  run(['-p', 'tsconfig.build.json'])
  run(['bench/bare-server.ts', '--outDir', 'bench/.build', '--target', 'ES2023', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--skipLibCheck', '--strict'])
}

/** Starts the compiled bench/bare-server.ts as its own process (same Node as the broker). */
export async function startBare (body: string): Promise<{ url: string, pid: number, stop: () => Promise<void> }> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [`${root}bench/.build/bare-server.js`], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), BARE_BODY: body },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('bare server did not start within 20 s')) }, 20_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { if (chunk.includes('listening')) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`bare server exited with ${String(code)}`)) })
  })
  return {
    url: `http://127.0.0.1:${port}/token`,
    pid: child.pid as number,
    stop: async () => { if (child.exitCode === null) child.kill('SIGTERM'); await exited }
  }
}

export async function runThroughput (options: { connections?: number, durationSeconds?: number, warmupSeconds?: number, pacedRate?: number } = {}): Promise<ThroughputResult> {
  const connections = options.connections ?? 50
  const durationSeconds = options.durationSeconds ?? 10
  const warmupSeconds = options.warmupSeconds ?? 3
  const pacedRate = options.pacedRate ?? 2000
  const apiKey = `bench-${randomBytes(16).toString('hex')}`

  // A JWT caller as a Kubernetes service account would be: ES256, issuer, audience, subject, expiry.
  const issuer = 'https://kubernetes.default.svc'
  const audience = 'credential-broker'
  const subject = 'system:serviceaccount:bench:load'
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = { ...await exportJWK(publicKey), kid: 'bench', alg: 'ES256', use: 'sig' }
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'bench' })
    .setIssuer(issuer).setAudience(audience).setSubject(subject).setIssuedAt().setExpirationTime('2h').sign(privateKey)

  const redis = await benchRedis()
  const kivra = await startKivraStandIn()
  let broker: BrokerProcess | undefined
  let brokerWarn: BrokerProcess | undefined
  let bare: Awaited<ReturnType<typeof startBare>> | undefined
  try {
    const brokerEnv = {
      // One caller drives all the load here; the per-caller limit (default 6000/min) would cap the bench,
      // so it is set to its maximum: the limiter still counts every request, as in production.
      RATE_LIMIT_PER_MINUTE: '10000000',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      CREDENTIALS_FILE: tempFile('credentials.yaml', toYaml({
        callers: [
          { id: 'bench-key', api_key_sha256: sha256Hex(apiKey) },
          { id: 'bench-jwt', jwt_subject: subject }
        ],
        caller_jwt: { issuer, audience, jwks_file: tempFile('jwks.json', JSON.stringify({ keys: [jwk] })), algorithms: ['ES256'] },
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, allowed_callers: ['bench-key', 'bench-jwt'] }]
      })),
      SECRETS_FILE: tempFile('secrets.json', JSON.stringify({ 'secret/kivra': { ...kivra.secret } }))
    }
    compileServers()
    broker = await startBroker({ ...brokerEnv, LOG_LEVEL: 'info' }, { stdout: 'ignore', built: true })
    brokerWarn = await startBroker({ ...brokerEnv, LOG_LEVEL: 'warn' }, { stdout: 'ignore', built: true })
    const tokenUrl = `${broker.url}/v1/credentials/kivra/token?min_ttl=60`
    const first = await fetch(tokenUrl, { headers: { authorization: `Bearer ${apiKey}` } })
    const answer = await first.text()
    if (first.status !== 200) throw new Error(`broker answered ${first.status} to the first token request: ${answer.slice(0, 200)}`)
    const warnCheck = await fetch(`${brokerWarn.url}/v1/credentials/kivra/token?min_ttl=60`, { headers: { authorization: `Bearer ${apiKey}` } })
    if (warnCheck.status !== 200) throw new Error(`the LOG_LEVEL=warn broker answered ${warnCheck.status}`)
    await warnCheck.arrayBuffer()
    const jwtCheck = await fetch(tokenUrl, { headers: { authorization: `Bearer ${jwt}` } })
    if (jwtCheck.status !== 200) throw new Error(`broker refused the bench JWT caller (${jwtCheck.status})`)
    await jwtCheck.arrayBuffer()

    // The bare body: the broker's answer with the token replaced by a string of the same length.
    const parsed = JSON.parse(answer) as { access_token: string }
    const bareBody = JSON.stringify({ ...parsed, access_token: 'x'.repeat(parsed.access_token.length) })
    bare = await startBare(bareBody)
    const bareAnswer = await (await fetch(bare.url)).text()

    const targets: Record<Target, LoadTarget> = {
      bare: { url: bare.url, headers: {}, pid: bare.pid },
      broker: { url: tokenUrl, headers: { authorization: `Bearer ${apiKey}` }, pid: broker.child.pid as number },
      'broker-jwt': { url: tokenUrl, headers: { authorization: `Bearer ${jwt}` }, pid: broker.child.pid as number },
      'broker-warn': { url: `${brokerWarn.url}/v1/credentials/kivra/token?min_ttl=60`, headers: { authorization: `Bearer ${apiKey}` }, pid: brokerWarn.child.pid as number }
    }
    const mintsBefore = kivra.mints

    // Warm-up: JIT, connection setup, the JWT verification cache.
    for (const target of ['bare', 'broker', 'broker-jwt', 'broker-warn'] as const) await load(targets[target], { connections, durationSeconds: warmupSeconds })

    const order: Target[] = ['bare', 'broker', 'broker-jwt', 'broker-warn', 'bare', 'broker-warn', 'broker-jwt', 'broker', 'bare']
    const runs: ThroughputResult['runs'] = []
    for (const target of order) {
      console.log(`throughput: ${target} for ${durationSeconds} s`)
      runs.push({ target, ...await load(targets[target], { connections, durationSeconds }) })
    }
    const of = (target: Target): LoadFigures => mean(runs.filter(run => run.target === target))
    const pacedOf = async (target: Target): Promise<LoadFigures> => await load(targets[target], { connections, durationSeconds: Math.max(5, Math.round(durationSeconds / 2)), overallRate: pacedRate })
    const paced = { requestsPerSecond: pacedRate, bare: await pacedOf('bare'), broker: await pacedOf('broker'), brokerJwt: await pacedOf('broker-jwt'), brokerWarn: await pacedOf('broker-warn') }

    const bareFigures = of('bare')
    const brokerFigures = of('broker')
    const jwtFigures = of('broker-jwt')
    const warnFigures = of('broker-warn')
    const ratioTo = (figures: LoadFigures): number => round(figures.requestsPerSecond / bareFigures.requestsPerSecond, 2)
    const ratio = { broker: ratioTo(brokerFigures), brokerJwt: ratioTo(jwtFigures), brokerWarn: ratioTo(warnFigures) }
    const goal = { ratio: 0.8, p99Ms: 2 }
    return {
      bench: 'throughput',
      connections,
      durationSeconds,
      warmupSeconds,
      bodyBytes: { broker: Buffer.byteLength(answer), bare: Buffer.byteLength(bareAnswer) },
      runs,
      bare: bareFigures,
      broker: brokerFigures,
      brokerJwt: jwtFigures,
      brokerWarn: warnFigures,
      ratio,
      paced,
      vmHwmMb: { broker: mb(procStatusKb(targets.broker.pid, 'VmHWM')), brokerWarn: mb(procStatusKb(targets['broker-warn'].pid, 'VmHWM')), bare: mb(procStatusKb(bare.pid, 'VmHWM')) },
      goal,
      met: {
        ratio: ratio.broker >= goal.ratio,
        brokerJwtRatio: ratio.brokerJwt >= goal.ratio,
        p99Saturated: brokerFigures.p99Ms <= goal.p99Ms,
        p99Paced: paced.broker.p99Ms <= goal.p99Ms
      },
      mintsDuringBench: kivra.mints - mintsBefore
    }
  } finally {
    await bare?.stop()
    await broker?.stop('SIGTERM')
    await brokerWarn?.stop('SIGTERM')
    await kivra.close()
    await redis.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runThroughput()
  writeFileSync(new URL('results/throughput.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
}
