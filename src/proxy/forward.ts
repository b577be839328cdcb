/**
 * One upstream attempt of the proxy, with undici's Dispatcher API (undici is a kept dependency): the path
 * goes on the request line exactly as judged by path.ts (`dispatcher.request` takes origin and path as
 * they are; `undici.request(url)` and fetch would re-parse and re-encode the URL, and then a SIR Giving
 * signature would cover another path than the one sent), redirects are not followed (no redirect
 * interceptor), and the answer's body is a stream handed on as it arrives.
 *
 * Every wait is bounded by the credential's proxy timeout: connecting (the Agent's connect timeout), the
 * answer's headers (`headersTimeout`) and each pause between body chunks (`bodyTimeout`). Failures become
 * the API's problems: 504 CB_UPSTREAM_TIMEOUT for a timeout, 502 CB_UPSTREAM_UNAVAILABLE otherwise; the
 * cause is kept for the log only (it may name the host, never a credential).
 */
import type { Readable } from 'node:stream'
import { Agent, errors, type Dispatcher } from 'undici'
import { BrokerError } from '../errors.js'

export interface UpstreamAttempt {
  origin: string
  pathWithQuery: string
  method: string
  headers: Record<string, string | string[]>
  /** Sent when not empty. */
  body: Buffer
  timeoutMs: number
  signal?: AbortSignal | undefined
}

export interface UpstreamAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Readable
}

/** Drops an answer's body without reading it to the end (the connection is reused when it can be). */
export function discardBody (body: Readable): void {
  body.on('error', () => {})
  body.destroy()
}

function isTimeout (err: unknown): boolean {
  return err instanceof errors.ConnectTimeoutError || err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError ||
    (err instanceof Error && (err as NodeJS.ErrnoException).code === 'ETIMEDOUT')
}

/** One Agent per timeout value: the connect timeout is a property of the Agent, not of a request. */
export interface UpstreamClient {
  send: (attempt: UpstreamAttempt) => Promise<UpstreamAnswer>
  close: () => Promise<void>
}

export function createUpstreamClient (): UpstreamClient {
  const agents = new Map<number, Agent>()
  const agentFor = (timeoutMs: number): Agent => {
    let agent = agents.get(timeoutMs)
    if (agent === undefined) {
      agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 4_000 })
      agents.set(timeoutMs, agent)
    }
    return agent
  }

  return {
    async send (attempt) {
      const options: Dispatcher.RequestOptions = {
        origin: attempt.origin,
        path: attempt.pathWithQuery,
        method: attempt.method as Dispatcher.HttpMethod,
        headers: attempt.headers,
        body: attempt.body.length > 0 ? attempt.body : undefined,
        headersTimeout: attempt.timeoutMs,
        bodyTimeout: attempt.timeoutMs,
        signal: attempt.signal
      }
      try {
        const answer = await agentFor(attempt.timeoutMs).request(options)
        return { status: answer.statusCode, headers: answer.headers, body: answer.body }
      } catch (err) {
        if (attempt.signal?.aborted === true) throw err
        if (isTimeout(err)) throw new BrokerError('CB_UPSTREAM_TIMEOUT', `the provider API did not answer within ${attempt.timeoutMs} ms`, { cause: err })
        throw new BrokerError('CB_UPSTREAM_UNAVAILABLE', 'the provider API could not be reached', { cause: err })
      }
    },
    async close () {
      await Promise.all([...agents.values()].map(async agent => { await agent.close() }))
      agents.clear()
    }
  }
}
