/**
 * What every fault test shares: a steady load of token requests against broker processes, the checks a
 * user would make of each answer (against what the provider stand-in really issued), and the recovery
 * report. Recovery times go to bench/results/faults.json (one entry per fault, merged across test files)
 * and to stdout as one line: `fault-recovery <fault> <ms> ms`.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sleep } from '../../src/time.js'
import type { BrokerProcess } from '../support/process.js'
import { clusterApiKey } from '../support/cluster.js'
import type { ProviderStandIn } from '../support/providers/index.js'

export interface Answer {
  /** 0: no HTTP answer (connection refused or reset, timeout). */
  status: number
  process: number
  sentAt: number
  receivedAt: number
  token?: string | undefined
  expiresIn?: number | undefined
  code?: string | undefined
  contentType?: string | undefined
  retryAfter?: string | undefined
  error?: string | undefined
}

export interface Load {
  readonly answers: Answer[]
  /** Stops the callers and waits for their last requests. */
  stop: () => Promise<Answer[]>
}

/** Callers of this suite ask for this much remaining life. */
export const minTtlSeconds = 2

/** Environment every fault cluster gets on top of startBrokerCluster's. */
export const faultEnv: Record<string, string> = {
  // One caller id drives all the load; the per-caller limit is not what these tests are about.
  RATE_LIMIT_PER_MINUTE: '10000000'
}

function alive (process: BrokerProcess): boolean {
  return process.child.exitCode === null && process.child.signalCode === null
}

/** One GET /v1/credentials/{id}/token, recording everything a caller could see. */
export async function askToken (processes: readonly BrokerProcess[], index: number, credentialId: string, minTtl = minTtlSeconds): Promise<Answer> {
  const target = processes[index] as BrokerProcess
  const sentAt = Date.now()
  try {
    const response = await fetch(`${target.url}/v1/credentials/${credentialId}/token?min_ttl=${minTtl}`, {
      headers: { authorization: `Bearer ${clusterApiKey}` },
      signal: AbortSignal.timeout(15_000)
    })
    const receivedAt = Date.now()
    const text = await response.text()
    let body: { access_token?: string, expires_in?: number, code?: string } = {}
    try { body = JSON.parse(text) as typeof body } catch { /* recorded by status and content type */ }
    return {
      status: response.status,
      process: index,
      sentAt,
      receivedAt,
      token: body.access_token,
      expiresIn: body.expires_in,
      code: body.code,
      contentType: response.headers.get('content-type') ?? undefined,
      retryAfter: response.headers.get('retry-after') ?? undefined
    }
  } catch (err) {
    return { status: 0, process: index, sentAt, receivedAt: Date.now(), error: (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message }
  }
}

/**
 * `concurrency` callers spread over the processes that are alive (or those in `only`), each asking with
 * `minTtl`, pausing `pauseMs`, asking again, until stop() or `maxDurationMs` (a bound, not the plan).
 */
export function startLoad (processes: readonly BrokerProcess[], credentialId: string, options: { concurrency?: number, pauseMs?: number, maxDurationMs?: number, minTtl?: number, only?: readonly number[] } = {}): Load {
  const answers: Answer[] = []
  const concurrency = options.concurrency ?? 12
  const pauseMs = options.pauseMs ?? 20
  const deadline = Date.now() + (options.maxDurationMs ?? 120_000)
  let stopped = false
  const callers = Promise.all(Array.from({ length: concurrency }, async (_, caller) => {
    for (let round = 0; !stopped && Date.now() < deadline; round++) {
      const live = processes.map((process, index) => ({ process, index })).filter(({ process, index }) => alive(process) && (options.only === undefined || options.only.includes(index)))
      if (live.length === 0) break
      const { index } = live[(caller + round) % live.length] as { index: number }
      answers.push(await askToken(processes, index, credentialId, options.minTtl))
      await sleep(pauseMs)
    }
  }))
  return {
    answers,
    stop: async () => {
      stopped = true
      await callers
      return answers
    }
  }
}

export interface Verdict {
  total: number
  ok: number
  /** 503 problem+json with Retry-After: allowed during a fault. */
  unavailable: number
  /** Anything else that is not a 200: a 500, a 502, a 503 without Retry-After, no answer at all. */
  badErrors: Answer[]
  /** 200s whose token the provider never issued. */
  unknownTokens: Answer[]
  /** 200s whose token had already expired (provider's clock) when the answer arrived. */
  expired: Answer[]
  /** 200s with expires_in below min_ttl, or whose real remaining life was below min_ttl. */
  belowMinTtl: Answer[]
  /** 200s whose expires_in promised more life than the token really had (beyond 1.5 s of transit). */
  overstated: Array<Answer & { overstatedMs: number }>
}

/**
 * Checks every answer as a caller would, against the provider's own record of each token. A process
 * killed on purpose may leave callers without an answer: pass it as `killed` to excuse those.
 */
export function judge (answers: readonly Answer[], standIn: ProviderStandIn, options: { minTtl?: number, killed?: { process: number, at: number } } = {}): Verdict {
  const minTtl = options.minTtl ?? minTtlSeconds
  const verdict: Verdict = { total: answers.length, ok: 0, unavailable: 0, badErrors: [], unknownTokens: [], expired: [], belowMinTtl: [], overstated: [] }
  for (const answer of answers) {
    if (answer.status === 200) {
      verdict.ok += 1
      const info = answer.token === undefined ? undefined : standIn.tokenInfo(answer.token)
      if (info === undefined) { verdict.unknownTokens.push(answer); continue }
      if (info.expiresAt <= answer.receivedAt) verdict.expired.push(answer)
      // The broker measures a token's life from when the provider's answer reached it, so its view may be
      // a few ms longer than the provider's; 1 s of slack, far below any skew or staleness worth catching.
      if ((answer.expiresIn ?? -1) < minTtl || info.expiresAt - answer.receivedAt < minTtl * 1000 - 1000) verdict.belowMinTtl.push(answer)
      const overstatedMs = answer.receivedAt + (answer.expiresIn ?? 0) * 1000 - info.expiresAt
      if (overstatedMs > 1500) verdict.overstated.push({ ...answer, overstatedMs })
      continue
    }
    const excused = options.killed !== undefined && answer.process === options.killed.process && answer.status === 0 && answer.receivedAt >= options.killed.at
    if (excused) continue
    if (answer.status === 503 && answer.contentType?.startsWith('application/problem+json') === true && answer.retryAfter !== undefined && Number(answer.retryAfter) >= 1) {
      verdict.unavailable += 1
      continue
    }
    verdict.badErrors.push(answer)
  }
  return verdict
}

/** A short description of what went wrong, for assertion messages. */
export function describeProblems (verdict: Verdict): string {
  const sample = (list: readonly Answer[]): string => JSON.stringify(list.slice(0, 3).map(({ token: _token, ...rest }) => rest))
  return [
    verdict.badErrors.length > 0 ? `${verdict.badErrors.length} bad errors ${sample(verdict.badErrors)}` : '',
    verdict.unknownTokens.length > 0 ? `${verdict.unknownTokens.length} unknown tokens` : '',
    verdict.expired.length > 0 ? `${verdict.expired.length} expired tokens ${sample(verdict.expired)}` : '',
    verdict.belowMinTtl.length > 0 ? `${verdict.belowMinTtl.length} below min_ttl ${sample(verdict.belowMinTtl)}` : ''
  ].filter(Boolean).join('; ')
}

/** The first 200 received after `after` carrying a token the provider issued after `after`, if any. */
export function firstFreshAnswer (answers: readonly Answer[], standIn: ProviderStandIn, after: number, process?: number): Answer | undefined {
  return answers
    .filter(answer => answer.status === 200 && answer.receivedAt >= after && (process === undefined || answer.process === process))
    .filter(answer => (standIn.tokenInfo(answer.token as string)?.issuedAt ?? 0) >= after)
    .sort((a, b) => a.receivedAt - b.receivedAt)[0]
}

/** GET /readyz of a process: its status field, or "unreachable". */
export async function readiness (process: BrokerProcess): Promise<string> {
  try {
    const response = await fetch(`${process.url}/readyz`, { signal: AbortSignal.timeout(3000) })
    return ((await response.json()) as { status?: string }).status ?? `http ${response.status}`
  } catch {
    return 'unreachable'
  }
}

export interface RecoveryReport {
  fault: string
  /** From the fault's removal to the first fresh successful answer (or as the test defines it). */
  recoveryMs: number
  measuredAs: string
  requests: number
  ok: number
  unavailable503: number
  mints: number
  /** Anything else worth keeping (mint counts, outage lengths). */
  details?: Record<string, unknown>
}

const resultsFile = fileURLToPath(new URL('../../bench/results/faults.json', import.meta.url))

/**
 * Records one fault's recovery: a line on stdout and an entry in bench/results/faults.json. Test files
 * run in parallel processes, so the file is read, merged and replaced (rename) per entry; a lost race
 * costs at most one entry of a report, never a test.
 */
export function reportRecovery (report: RecoveryReport): void {
  process.stdout.write(`fault-recovery ${report.fault} ${report.recoveryMs} ms (${report.measuredAs})\n`)
  try {
    mkdirSync(dirname(resultsFile), { recursive: true })
    let current: { at?: string, node?: string, faults: Record<string, RecoveryReport> } = { faults: {} }
    try { current = JSON.parse(readFileSync(resultsFile, 'utf8')) as typeof current } catch { /* first entry */ }
    current.faults = { ...current.faults, [report.fault]: report }
    current.at = new Date().toISOString()
    current.node = process.version
    const temporary = `${resultsFile}.${process.pid}.tmp`
    writeFileSync(temporary, `${JSON.stringify(current, null, 2)}\n`)
    renameSync(temporary, resultsFile)
  } catch {
    // The report is a by-product; the assertions are the test.
  }
}
