import { Histogram, type Counter, type HistogramConfiguration, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client'
import type { TokenRequestResult } from './metrics.js'

/*
 * Token requests are counted here, in plain numbers, and handed to prom-client only when it is scraped.
 * prom-client hashes the label set of every inc() and observe() (sorting and joining label names and values
 * into a string); at one counter, one histogram and sometimes a second counter per token request, that was
 * a measurable part of a cache hit. The series, their labels and their values are the same.
 */

/** One label set's observations, per bucket (the last is +Inf), with their sum. */
interface Observations { buckets: Float64Array, sum: number, count: number }

/**
 * credential_broker_token_request_duration_seconds: a prom-client Histogram whose observations are kept
 * per credential in plain arrays (observe() costs a bucket search and three additions) and merged into
 * the histogram's own output when it is read. Same name, labels, buckets and values as a plain Histogram.
 */
export class LocallyCountedHistogram extends Histogram<'credential'> {
  private readonly upper: number[]
  private readonly observations = new Map<string, Observations>()

  constructor (configuration: HistogramConfiguration<'credential'> & { buckets: number[] }) {
    super(configuration)
    this.upper = [...configuration.buckets].sort((a, b) => a - b)
    // prom-client's constructor sets `observe` on the instance (with or without exemplars), which would
    // shadow a method of this class: replace it the same way.
    this.observe = this.observeLocally.bind(this) as Histogram<'credential'>['observe']
  }

  private observeLocally (labels: unknown, value?: number): void {
    const credentialLabel = (labels as { credential?: unknown } | undefined)?.credential
    if (typeof labels !== 'object' || value === undefined || credentialLabel === undefined) throw new TypeError('token_request_duration_seconds takes a credential label and a value')
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`)
    const credential = String(credentialLabel)
    let observed = this.observations.get(credential)
    if (observed === undefined) {
      observed = { buckets: new Float64Array(this.upper.length + 1), sum: 0, count: 0 }
      this.observations.set(credential, observed)
      // The label set exists in prom-client (all zeros) so its output has the series' shape to add to.
      this.zero({ credential })
    }
    let bucket = 0
    while (bucket < this.upper.length && value > (this.upper[bucket] as number)) bucket++
    observed.buckets[bucket] = (observed.buckets[bucket] as number) + 1
    observed.sum += value
    observed.count += 1
  }

  override async get (): Promise<MetricObjectWithValues<MetricValueWithName<'credential' | 'le'>>> {
    const metric = await super.get()
    for (const entry of metric.values) {
      const observed = this.observations.get(String(entry.labels.credential))
      if (observed === undefined) continue
      if (entry.metricName?.endsWith('_sum') === true) entry.value += observed.sum
      else if (entry.metricName?.endsWith('_count') === true) entry.value += observed.count
      else entry.value += this.atOrBelow(observed, (entry.labels as { le?: string | number }).le)
    }
    return metric
  }

  /** Observations at or below a bucket's upper bound (buckets are cumulative in the output). */
  private atOrBelow (observed: Observations, le: string | number | undefined): number {
    let total = 0
    for (let bucket = 0; bucket <= this.upper.length; bucket++) {
      if (le !== '+Inf' && (bucket === this.upper.length || (this.upper[bucket] as number) > Number(le))) break
      total += observed.buckets[bucket] as number
    }
    return total
  }

  override reset (): void {
    super.reset()
    // prom-client's constructor calls reset() before this class's fields exist.
    ;(this.observations as Map<string, Observations> | undefined)?.clear()
  }

  override remove (...values: Array<Partial<Record<'credential', string | number>> | string | number>): void {
    super.remove(...values as [Partial<Record<'credential', string | number>>])
    const first = values[0]
    this.observations.delete(String(typeof first === 'object' ? first.credential : first))
  }
}

/** Per (credential, result) counts not yet added to their prom-client counter. */
export interface PendingCounts {
  add: (credential: string, result: TokenRequestResult | 'stale_grant') => void
  /** Adds the pending counts of `result` (or all but stale_grant) to `counter`; from its collect(). */
  foldInto: (counter: Counter<'credential' | 'result'> | Counter<'credential'>, which: 'results' | 'stale_grant') => void
}

export function createPendingCounts (): PendingCounts {
  const pending = new Map<string, Map<string, number>>()
  return {
    add (credential, result) {
      let byResult = pending.get(credential)
      if (byResult === undefined) {
        byResult = new Map()
        pending.set(credential, byResult)
      }
      byResult.set(result, (byResult.get(result) ?? 0) + 1)
    },
    foldInto (counter, which) {
      for (const [credential, byResult] of pending) {
        for (const [result, count] of byResult) {
          if (count === 0 || (which === 'stale_grant') !== (result === 'stale_grant')) continue
          if (which === 'stale_grant') (counter as Counter<'credential'>).inc({ credential }, count)
          else (counter as Counter<'credential' | 'result'>).inc({ credential, result }, count)
          byResult.set(result, 0)
        }
      }
    }
  }
}
