/**
 * One autocannon load run against an HTTP target, with latencies per response and the target's peak RSS
 * from /proc, and the mean over several runs. Used by the proxy bench (bench/proxy.ts); the token
 * throughput bench (bench/throughput.ts) drives wrk instead, for its CPU-per-request figures.
 */
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'

export interface LoadFigures {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  /** Highest VmRSS of the server process seen during the run. */
  peakRssMb: number
  non2xx: number
  errors: number
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits))
const mb = (kb: number): number => Number((kb / 1024).toFixed(1))

export function procStatusKb (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match?.[1] === undefined ? 0 : Number(match[1])
  } catch {
    return 0 // not Linux, or the process is gone
  }
}


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
