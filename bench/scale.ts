/**
 * Scale: 10,000 credentials with mixed lifetimes (30 min, 1 h, 2 h, 4 h, 8 h; 2,000 each) on one engine.
 * Measures resident memory after warm-up, how evenly proactive refreshes spread over time (the busiest
 * second against the average), and the CPU the whole refresh machinery uses.
 *
 * Why an injected clock: real lifetimes are 30 min to 8 h, and a bench cannot wait a 6 h refresh cycle.
 * Shortened real lifetimes would not measure the real schedule either: below ~10 min the default 5 min
 * margin dominates and the refresh point is clamped to 50 % of the lifetime, where jitter cannot act. So
 * the engine runs in this process (createBroker, as src/broker/plugin.ts builds it) on a FakeClock that
 * jumps one second at a time over 6.7 h of simulated time; after each jump the bench waits until every
 * refresh that fell due has finished for real. Everything else is real: the Redis grant store (leases,
 * fenced encrypted writes, pub/sub), the secret manager over a secrets file, the production provider
 * adapters calling Kivra stand-ins over HTTP. The stand-ins run on the same clock, so the time of each
 * mint request they record is the simulated second in which the engine decided to refresh.
 *
 * What the numbers include: this process also hosts the stand-ins and the driver, so RSS and CPU are an
 * upper bound for the engine. RSS is reported as measured and as the growth over a baseline taken with
 * the stand-ins and a Redis connection already up, before the engine is created. The stand-ins' request
 * logs are trimmed after every step so they do not grow with the run.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createBrokerFor, createSecretsFor, createStoreFor } from '../src/assemble.js'
import type { BrokerProviders } from '../src/broker/types.js'
import { loadConfig } from '../src/config.js'
import { createLogger } from '../src/observability/logger.js'
import type { TokenAdapter } from '../src/providers/types.js'
import { createProviderRegistry } from '../src/providers/catalog.js'
import type { GrantStore } from '../src/store/types.js'
import { tempFile } from '../test/support/app.js'
import { FakeClock } from '../test/support/fake-clock.js'
import { startKivraStandIn, type KivraStandIn } from '../test/support/providers/index.js'
import { deleteKeys } from '../test/support/redis.js'
import { benchRedis } from './redis.js'

export interface ScaleResult {
  bench: 'scale'
  /** Whether the engine's refresh pacer was on (it is by default). */
  pacing: boolean
  credentials: number
  lifetimesSeconds: number[]
  simulatedSeconds: number
  wallSeconds: number
  memory: {
    /** Before the engine existed: stand-ins, Redis connection, secrets file loaded. */
    baselineRssMb: number
    /** After every credential holds a grant (cold start done). */
    afterWarmupRssMb: number
    afterWarmupHeapUsedMb: number
    growthRssMb: number
    perCredentialKb: number
    afterRunRssMb: number
    afterRunHeapUsedMb: number
  }
  coldStart: { mints: number, wallSeconds: number }
  refreshes: {
    /** Proactive refreshes after warm-up (mint requests the stand-ins received). */
    total: number
    failed: number
    /** Seconds from the first to the last proactive refresh. */
    windowSeconds: number
    averagePerSecond: number
    peakPerSecond: number
    peakSecond: number
    peakToAverage: number
    /** Seconds with more than 2 × the average. */
    secondsOverTwiceAverage: number
    /** Per minute: the busiest minute against the average minute over the same window. */
    perMinute: { averagePerMinute: number, peakPerMinute: number, peakToAverage: number }
    /**
     * The same count of refreshes placed uniformly at random over the same window: what the busiest second
     * looks like from chance alone. At a few refreshes per second, a Poisson peak is several × the mean.
     */
    uniformReference: { peakPerSecond: number, peakToAverage: number }
    /** The same, over the last third of the run, when the first waves after the cold start have spread out. */
    lastThird: { averagePerSecond: number, peakPerSecond: number, peakToAverage: number }
    /** Per lifetime: how wide the first refresh wave after the cold start is, and its busiest second. */
    firstWave: Array<{ lifetimeSeconds: number, credentials: number, fromSecond: number, toSecond: number, peakPerSecond: number, averagePerSecond: number, peakToAverage: number }>
  }
  cpu: {
    /** process.cpuUsage() (user + system) over the simulated run, after warm-up. */
    seconds: number
    perRefreshMs: number
    /** Of the wall time of the run. */
    share: number
  }
  goal: { peakToAverage: number }
  met: { peakToAverage: boolean, peakToAverageLastThird: boolean }
}

// A full GC before each memory reading, so heap figures are live data rather than garbage not yet collected.
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

const mb = (bytes: number): number => Number((bytes / 1048576).toFixed(1))
const round = (value: number, digits = 2): number => Number(value.toFixed(digits))

/** Counts everything in flight (store calls, provider calls, grant notices not yet delivered). */
function createSettleTracker (): {
  track: <T>(promise: Promise<T>) => Promise<T>
  putWritten: () => void
  noticeSeen: () => void
  settle: (timeoutMs: number) => Promise<void>
} {
  let pending = 0
  let puts = 0
  let notices = 0
  let waiters: Array<() => void> = []
  const idle = (): boolean => pending === 0 && notices >= puts
  const poke = (): void => {
    if (!idle()) return
    const woken = waiters
    waiters = []
    for (const wake of woken) wake()
  }
  return {
    async track (promise) {
      pending += 1
      try {
        return await promise
      } finally {
        pending -= 1
        poke()
      }
    },
    putWritten: () => { puts += 1 },
    noticeSeen: () => { notices += 1; poke() },
    async settle (timeoutMs) {
      const deadline = Date.now() + timeoutMs
      // Quiet across two event-loop turns: queued refreshes (the engine's limiter) start on microtasks,
      // so a turn with nothing in flight after all microtasks ran means nothing is left to start.
      for (let quiet = 0; quiet < 2;) {
        if (Date.now() > deadline) throw new Error(`scale bench: the engine did not settle within ${timeoutMs} ms`)
        await new Promise(resolve => setImmediate(resolve))
        if (idle()) { quiet += 1; continue }
        quiet = 0
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, 200)
          waiters.push(() => { clearTimeout(timer); resolve() })
        })
      }
    }
  }
}

function trackedStore (store: GrantStore, tracker: ReturnType<typeof createSettleTracker>): GrantStore {
  return {
    kind: store.kind,
    get: async key => await tracker.track(store.get(key)),
    acquireLease: async (key, ttlMs) => await tracker.track(store.acquireLease(key, ttlMs)),
    renewLease: async (lease, ttlMs) => await tracker.track(store.renewLease(lease, ttlMs)),
    leaseRemainingMs: async key => await tracker.track(store.leaseRemainingMs(key)),
    releaseLease: async (lease, options) => { await tracker.track(store.releaseLease(lease, options)) },
    putGrant: async (lease, grant) => {
      const written = await tracker.track(store.putGrant(lease, grant))
      if (written) tracker.putWritten()
      return written
    },
    deleteGrant: async lease => await tracker.track(store.deleteGrant(lease)),
    onGrant: listener => store.onGrant(key => { listener(key); tracker.noticeSeen() }),
    health: async () => await store.health(),
    close: async () => { await store.close() }
  }
}

function trackedProviders (tracker: ReturnType<typeof createSettleTracker>): BrokerProviders {
  const registry = createProviderRegistry()
  return {
    adapterFor: kind => {
      const adapter = registry.adapterFor(kind)
      if (adapter.kind !== 'token') return adapter
      const token: TokenAdapter = adapter
      return {
        ...token,
        mint: async (secret, ctx) => await tracker.track(token.mint(secret, ctx)),
        ...(token.refresh === undefined ? {} : { refresh: async (grant, secret, ctx) => await tracker.track((token.refresh as NonNullable<TokenAdapter['refresh']>)(grant, secret, ctx)) })
      }
    },
    webhookVerifierFor: kind => registry.webhookVerifierFor(kind)
  }
}

export async function runScale (options: { credentials?: number, lifetimesSeconds?: number[], simulatedSeconds?: number, pacing?: boolean } = {}): Promise<ScaleResult> {
  const lifetimesSeconds = options.lifetimesSeconds ?? [1800, 3600, 7200, 14_400, 28_800]
  const credentialCount = options.credentials ?? 10_000
  // Long enough for the 8 h class's first refresh (at 6 h ± 24 min) to complete.
  const simulatedSeconds = options.simulatedSeconds ?? 24_000
  const clock = new FakeClock()
  const log = createLogger('warn')
  const redis = await benchRedis()
  const keyPrefix = `bench-scale-${randomBytes(4).toString('hex')}`
  const standIns: KivraStandIn[] = []
  const tracker = createSettleTracker()
  const perSecond = new Map<number, number>()
  const perSecondByLifetime = lifetimesSeconds.map(() => new Map<number, number>())
  const startedAt = clock.now()
  /** Moves the stand-ins' recorded mint times into per-second counts, keeping their logs small. */
  const harvest = (): number => {
    let count = 0
    standIns.forEach((standIn, index) => {
      for (const request of standIn.requests.splice(0)) {
        if (request.endpoint !== 'mint') continue
        const second = Math.floor((request.at - startedAt) / 1000)
        perSecond.set(second, (perSecond.get(second) ?? 0) + 1)
        const byLifetime = perSecondByLifetime[index] as Map<number, number>
        byLifetime.set(second, (byLifetime.get(second) ?? 0) + 1)
        count += 1
      }
    })
    return count
  }

  try {
    for (const lifetimeSeconds of lifetimesSeconds) standIns.push(await startKivraStandIn({ now: clock.now, lifetimeSeconds }))
    const credentials = Array.from({ length: credentialCount }, (_, i) => ({
      id: `credential-${i}`,
      provider: 'kivra',
      environment: 'production',
      secret: 'secret/kivra',
      base_url: (standIns[i % standIns.length] as KivraStandIn).url,
      scope: `kivra.v1.tenant.t${i}.*`
    }))
    // Assembled as a production replica is (src/assemble.ts), with the store, secret reads and provider
    // calls tracked so each simulated second can wait until the work it made due has finished.
    const config = loadConfig({
      CREDENTIALS_FILE: tempFile('credentials.json', JSON.stringify({ credentials })),
      SECRETS_FILE: tempFile('secrets.json', JSON.stringify({ 'secret/kivra': { ...standIns[0]?.secret } })),
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: keyPrefix,
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      SECRET_CHECK_INTERVAL_SECONDS: '86400',
      LOG_LEVEL: 'warn'
    })
    const secrets = await createSecretsFor(config, log)
    const inner = await createStoreFor(config, secrets.manager, log, { now: clock.now })
    collectGarbage()
    const baselineRss = process.memoryUsage().rss

    let failed = 0
    const held = secrets.manager
    const broker = createBrokerFor(config, trackedStore(inner, tracker), {
      // Secret reads are tracked too: the first one goes to the file, between the lease and the mint.
      manager: { ...held, get: async path => await tracker.track(held.get(path)), reread: async path => await tracker.track(held.reread(path)) },
      kind: secrets.kind
    }, {
      providers: trackedProviders(tracker),
      log,
      clock,
      observer: { refreshed: (_provider, _id, result) => { if (result !== 'success') failed += 1 } },
      options: options.pacing === false ? { pacing: false } : {}
    })

    // Warm-up: the cold start mints every credential once (16 at a time, the engine's default).
    const coldStarted = Date.now()
    await broker.start()
    clock.advance(0)
    await tracker.settle(300_000)
    const coldMints = harvest()
    perSecond.clear()
    for (const byLifetime of perSecondByLifetime) byLifetime.clear()
    const coldWallSeconds = (Date.now() - coldStarted) / 1000
    collectGarbage()
    const warm = process.memoryUsage()

    // The run: one simulated second per step; every refresh due in it completes before the next step.
    const cpuBefore = process.cpuUsage()
    const wallBefore = Date.now()
    for (let second = 1; second <= simulatedSeconds; second++) {
      clock.advanceTo(startedAt + second * 1000)
      await tracker.settle(120_000)
      harvest()
    }
    const cpu = process.cpuUsage(cpuBefore)
    const wallSeconds = (Date.now() - wallBefore) / 1000
    collectGarbage()
    const afterRun = process.memoryUsage()
    await broker.close()
    await inner.close()
    await secrets.manager.close()

    const seconds = [...perSecond.keys()].sort((a, b) => a - b)
    const total = [...perSecond.values()].reduce((sum, count) => sum + count, 0)
    const first = seconds[0] ?? 0
    const last = seconds[seconds.length - 1] ?? 0
    const windowSeconds = last - first + 1
    const average = total / windowSeconds
    let peak = 0
    let peakSecond = 0
    for (const [second, count] of perSecond) if (count > peak) { peak = count; peakSecond = second }
    const perMinute = new Map<number, number>()
    for (const [second, count] of perSecond) perMinute.set(Math.floor((second - first) / 60), (perMinute.get(Math.floor((second - first) / 60)) ?? 0) + count)
    const averagePerMinute = total / Math.ceil(windowSeconds / 60)
    const peakPerMinute = Math.max(0, ...perMinute.values())
    const uniform = new Uint32Array(windowSeconds)
    for (let i = 0; i < total; i++) { const bin = Math.floor(Math.random() * windowSeconds); uniform[bin] = (uniform[bin] ?? 0) + 1 }
    const uniformPeak = uniform.reduce((max, count) => Math.max(max, count), 0)
    const thirdFrom = Math.floor(simulatedSeconds * 2 / 3)
    const lastThirdCounts = seconds.filter(second => second >= thirdFrom).map(second => perSecond.get(second) as number)
    const lastThirdAverage = lastThirdCounts.reduce((sum, count) => sum + count, 0) / (simulatedSeconds - thirdFrom)
    const lastThirdPeak = Math.max(0, ...lastThirdCounts)
    const firstWave = lifetimesSeconds.map((lifetimeSeconds, index) => {
      // The first wave after the cold start: refreshes within the first 0.95 × lifetime.
      const byLifetime = perSecondByLifetime[index] as Map<number, number>
      const wave = [...byLifetime.entries()].filter(([second]) => second < 0.95 * lifetimeSeconds)
      if (wave.length === 0) return { lifetimeSeconds, credentials: 0, fromSecond: 0, toSecond: 0, peakPerSecond: 0, averagePerSecond: 0, peakToAverage: 0 }
      const from = Math.min(...wave.map(([second]) => second))
      const to = Math.max(...wave.map(([second]) => second))
      const count = wave.reduce((sum, [, n]) => sum + n, 0)
      const peakPerSecond = Math.max(...wave.map(([, n]) => n))
      const waveAverage = count / (to - from + 1)
      return {
        lifetimeSeconds,
        credentials: count,
        fromSecond: from,
        toSecond: to,
        peakPerSecond,
        averagePerSecond: round(waveAverage),
        peakToAverage: round(peakPerSecond / waveAverage)
      }
    })
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    const goal = { peakToAverage: 2 }
    return {
      bench: 'scale',
      pacing: options.pacing !== false,
      credentials: credentialCount,
      lifetimesSeconds,
      simulatedSeconds,
      wallSeconds: round(wallSeconds, 1),
      memory: {
        baselineRssMb: mb(baselineRss),
        afterWarmupRssMb: mb(warm.rss),
        afterWarmupHeapUsedMb: mb(warm.heapUsed),
        growthRssMb: mb(warm.rss - baselineRss),
        perCredentialKb: round((warm.rss - baselineRss) / credentialCount / 1024),
        afterRunRssMb: mb(afterRun.rss),
        afterRunHeapUsedMb: mb(afterRun.heapUsed)
      },
      coldStart: { mints: coldMints, wallSeconds: round(coldWallSeconds, 1) },
      refreshes: {
        total,
        failed,
        windowSeconds,
        averagePerSecond: round(average),
        peakPerSecond: peak,
        peakSecond,
        peakToAverage: round(peak / average),
        secondsOverTwiceAverage: [...perSecond.values()].filter(count => count > 2 * average).length,
        perMinute: { averagePerMinute: round(averagePerMinute), peakPerMinute, peakToAverage: round(peakPerMinute / averagePerMinute) },
        uniformReference: { peakPerSecond: uniformPeak, peakToAverage: round(uniformPeak / average) },
        lastThird: { averagePerSecond: round(lastThirdAverage), peakPerSecond: lastThirdPeak, peakToAverage: round(lastThirdPeak / lastThirdAverage) },
        firstWave
      },
      cpu: { seconds: round(cpuSeconds), perRefreshMs: round(total === 0 ? 0 : cpuSeconds * 1000 / total, 3), share: round(cpuSeconds / wallSeconds) },
      goal,
      met: { peakToAverage: peak / average <= goal.peakToAverage, peakToAverageLastThird: lastThirdPeak / lastThirdAverage <= goal.peakToAverage }
    }
  } finally {
    await Promise.all(standIns.map(async standIn => { await standIn.close() }))
    await deleteKeys(redis.url, keyPrefix).catch(() => {})
    await redis.stop()
  }
}

export interface ScaleComparison extends ScaleResult {
  /** The same run with the pacer off, in the same process run: what pacing changes. */
  unpaced: Pick<ScaleResult, 'refreshes' | 'cpu'>
  /** Paced ÷ unpaced. */
  pacedToUnpaced: { refreshes: number, peakPerSecond: number, cpuPerRefresh: number }
}

/** The scale bench with the pacer on, then off (the baseline), measured in the same process run. */
export async function runScaleComparison (): Promise<ScaleComparison> {
  const paced = await runScale()
  const unpaced = await runScale({ pacing: false })
  return {
    ...paced,
    unpaced: { refreshes: unpaced.refreshes, cpu: unpaced.cpu },
    pacedToUnpaced: {
      refreshes: round(paced.refreshes.total / unpaced.refreshes.total, 3),
      peakPerSecond: round(paced.refreshes.peakPerSecond / unpaced.refreshes.peakPerSecond),
      cpuPerRefresh: round(paced.cpu.perRefreshMs / unpaced.cpu.perRefreshMs)
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runScaleComparison()
  writeFileSync(new URL('results/scale.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
}
