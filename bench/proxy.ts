/**
 * Proxy overhead: the same upstream request made directly and through the broker's proxy route.
 *
 * Method, and why:
 * - The upstream is the compiled bare Fastify server of the throughput bench (its own process, loopback),
 *   answering a fixed JSON body of `bodyBytes`. "Direct" is autocannon → upstream; "proxied" is autocannon →
 *   the compiled broker (its own process, Redis, LOG_LEVEL=info: the audit line per request is paid) →
 *   `/v1/credentials/kivra/proxy/v1/credentials/kivra/token` → the same upstream route. The Kivra token is minted once in warm-up, so
 *   every proxied request is a local-cache hit plus one upstream round trip over a kept-alive connection.
 * - Overhead per request is reported three ways: the latency difference at a fixed, unsaturated rate (where
 *   queueing does not dominate; the clearest figure), the latency and throughput difference saturated
 *   (`connections` busy connections), and the broker's own CPU time per proxied request (utime + stime from
 *   /proc/<pid>/stat over the saturated runs, divided by the requests it answered).
 * - Runs are interleaved (direct, proxied, direct, proxied, direct) and each side's figure is the mean of its
 *   runs: the machine is shared and noisy, so only figures from the same run compare.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { stringify as toYaml } from 'yaml'
import { sha256Hex, tempFile } from '../test/support/app.js'
import { startBroker, type BrokerProcess } from '../test/support/process.js'
import { startKivraStandIn } from '../test/support/providers/index.js'
import { asDeployed } from './memory-cgroup.js'
import { benchRedis } from './redis.js'
import { load, mean, type LoadFigures, type LoadTarget } from './load.js'
import { compileServers, startBare } from './throughput.js'

type Target = 'direct' | 'proxied'

export interface ProxyBenchResult {
  bench: 'proxy'
  /** How the broker ran: the image's NODE_OPTIONS and the Deployment's memory limit (or why none). */
  broker: { nodeOptions: string | undefined, memoryLimit: string }
  connections: number
  durationSeconds: number
  bodyBytes: number
  runs: Array<{ target: Target } & LoadFigures>
  direct: LoadFigures
  proxied: LoadFigures
  paced: { requestsPerSecond: number, direct: LoadFigures, proxied: LoadFigures }
  overhead: {
    /** Paced: proxied minus direct latency, ms per request. */
    pacedP50Ms: number
    pacedP99Ms: number
    /** Saturated: proxied minus direct latency, and the throughput ratio. */
    saturatedP50Ms: number
    throughputRatio: number
    /** The broker's CPU time per proxied request (saturated runs), in microseconds. */
    brokerCpuMicrosPerRequest: number
  }
  mintsDuringBench: number
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits))

/** utime + stime of a process in milliseconds (Linux: /proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs (pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return 0
  }
}

export async function runProxyBench (options: { connections?: number, durationSeconds?: number, warmupSeconds?: number, pacedRate?: number } = {}): Promise<ProxyBenchResult> {
  const connections = options.connections ?? 10
  const durationSeconds = options.durationSeconds ?? 10
  const warmupSeconds = options.warmupSeconds ?? 3
  const pacedRate = options.pacedRate ?? 500
  const apiKey = `bench-${randomBytes(16).toString('hex')}`
  const body = JSON.stringify({ items: Array.from({ length: 4 }, (_, index) => ({ id: `item-${index}`, amount: 1000 + index, currency: 'SEK' })) })

  // The image's NODE_OPTIONS in a memory cgroup of the Deployment's limit (bench/memory-cgroup.ts).
  const deployed = asDeployed()
  const redis = await benchRedis()
  const kivra = await startKivraStandIn()
  let broker: BrokerProcess | undefined
  let upstream: Awaited<ReturnType<typeof startBare>> | undefined
  try {
    compileServers()
    upstream = await startBare(body, [])
    const upstreamBase = new URL(upstream.url).origin
    broker = await startBroker({
      LOG_LEVEL: 'info',
      RATE_LIMIT_PER_MINUTE: '10000000',
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      CREDENTIALS_FILE: tempFile('credentials.yaml', toYaml({
        callers: [{ id: 'bench', api_key_sha256: sha256Hex(apiKey) }],
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, api_base_url: upstreamBase, allowed_callers: ['bench'] }]
      })),
      SECRETS_FILE: tempFile('secrets.json', JSON.stringify({ 'secret/kivra': { ...kivra.secret } })),
      ...deployed.env
    }, { stdout: 'ignore', built: true, ...deployed.launcher })
    // The upstream's one route and query (bench/bare-server.ts), behind the proxy route's prefix.
    const upstreamTarget = new URL(upstream.url)
    const proxiedUrl = `${broker.url}/v1/credentials/kivra/proxy${upstreamTarget.pathname}${upstreamTarget.search}`
    const check = await fetch(proxiedUrl, { headers: { authorization: `Bearer ${apiKey}` } })
    const checked = await check.text()
    if (check.status !== 200 || checked !== body) throw new Error(`the proxied request answered ${check.status}: ${checked.slice(0, 200)}`)

    const targets: Record<Target, LoadTarget> = {
      direct: { url: upstream.url, headers: { authorization: 'Bearer upstream-ignores-it' }, pid: upstream.pid },
      proxied: { url: proxiedUrl, headers: { authorization: `Bearer ${apiKey}` }, pid: broker.child.pid as number }
    }
    const mintsBefore = kivra.mints
    for (const target of ['direct', 'proxied'] as const) await load(targets[target], { connections, durationSeconds: warmupSeconds })

    const runs: ProxyBenchResult['runs'] = []
    let brokerCpu = 0
    let proxiedRequests = 0
    for (const target of ['direct', 'proxied', 'direct', 'proxied', 'direct'] as const) {
      console.log(`proxy: ${target} for ${durationSeconds} s`)
      const cpuBefore = cpuMs(targets.proxied.pid)
      const figures = await load(targets[target], { connections, durationSeconds })
      if (target === 'proxied') {
        brokerCpu += cpuMs(targets.proxied.pid) - cpuBefore
        proxiedRequests += figures.requestsPerSecond * durationSeconds
      }
      runs.push({ target, ...figures })
    }
    const pacedOf = async (target: Target): Promise<LoadFigures> => await load(targets[target], { connections, durationSeconds: Math.max(5, Math.round(durationSeconds / 2)), overallRate: pacedRate })
    const paced = { requestsPerSecond: pacedRate, direct: await pacedOf('direct'), proxied: await pacedOf('proxied') }
    const direct = mean(runs.filter(run => run.target === 'direct'))
    const proxied = mean(runs.filter(run => run.target === 'proxied'))
    return {
      bench: 'proxy',
      broker: deployed.recorded,
      connections,
      durationSeconds,
      bodyBytes: Buffer.byteLength(body),
      runs,
      direct,
      proxied,
      paced,
      overhead: {
        pacedP50Ms: round(paced.proxied.p50Ms - paced.direct.p50Ms),
        pacedP99Ms: round(paced.proxied.p99Ms - paced.direct.p99Ms),
        saturatedP50Ms: round(proxied.p50Ms - direct.p50Ms),
        throughputRatio: round(proxied.requestsPerSecond / direct.requestsPerSecond, 2),
        brokerCpuMicrosPerRequest: proxiedRequests === 0 ? 0 : Math.round(brokerCpu * 1000 / proxiedRequests)
      },
      mintsDuringBench: kivra.mints - mintsBefore
    }
  } finally {
    await upstream?.stop()
    await broker?.stop('SIGTERM')
    deployed.remove()
    await kivra.close()
    await redis.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runProxyBench()
  writeFileSync(new URL('results/proxy.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
}
