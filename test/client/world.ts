/**
 * The client test world: the REAL broker app (buildTestApp: real Redis, unique key prefix) listening on
 * 127.0.0.1 port 0, provider stand-ins from test/support/providers as its credentials' base URLs, and a
 * record of every HTTP request the broker's server received (counted on the broker side, from its
 * http.Server, not by watching the client).
 */
import { createHash, randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { apiKeyCallers, buildTestApp, closeAll, type TestApp } from '../support/app.js'
import { startKivraStandIn, startSirGivingStandIn, type KivraStandIn, type SirGivingStandIn } from '../support/providers/index.js'

export const keys = {
  service: `client-test-service-${randomBytes(8).toString('hex')}`,
  other: `client-test-other-${randomBytes(8).toString('hex')}`
} as const

/** One HTTP request as the broker's server saw it. */
export interface BrokerRequest {
  method: string
  /** Path with query, as received. */
  url: string
  status: number
  requestId: string | undefined
  /** performance.now() when it arrived. */
  at: number
}

export interface ClientWorld {
  testApp: TestApp
  /** http://127.0.0.1:<port> of the listening broker. */
  baseUrl: string
  /** Kivra stand-in of credential "kivra" (8 h tokens). */
  kivra: KivraStandIn
  /** Kivra stand-in of "kivra-short": 20-second tokens. */
  kivraShort: KivraStandIn
  /** Kivra stand-in of "kivra-flaky": answers 503 to every mint until its fault is cleared. */
  kivraFlaky: KivraStandIn
  /** Kivra stand-in of "kivra-down": 503 to every mint, for good. */
  kivraDown: KivraStandIn
  sir: SirGivingStandIn
  /** Secrets the broker holds, by secret path (webhook secrets for the round trips). */
  secrets: Record<string, Record<string, string>>
  /** Requests the broker's server has finished answering, oldest first. */
  brokerRequests: BrokerRequest[]
  /** The finished broker requests whose path (without query) is `path`. */
  requestsTo: (path: string) => BrokerRequest[]
  /** Called whenever the broker finishes an answer (tests use it to change a stand-in at a precise moment). */
  onAnswered: (listener: ((request: BrokerRequest) => void) | undefined) => void
  close: () => Promise<void>
}

export async function startClientWorld (): Promise<ClientWorld> {
  const secretOf = (name: string): string => `${name}-${randomBytes(12).toString('hex')}`
  const kivra = await startKivraStandIn({ clientSecret: secretOf('kivra') })
  const kivraShort = await startKivraStandIn({ clientSecret: secretOf('kivra-short'), lifetimeSeconds: 20 })
  const kivraFlaky = await startKivraStandIn({ clientSecret: secretOf('kivra-flaky') })
  const kivraDown = await startKivraStandIn({ clientSecret: secretOf('kivra-down') })
  const sir = await startSirGivingStandIn({ hmacSecret: createHash('sha256').update(secretOf('sir')).digest('hex') })
  const standIns = [kivra, kivraShort, kivraFlaky, kivraDown, sir]
  // Set before the broker starts, so its start-up mint already fails.
  kivraFlaky.setFault({ kind: 'server-error', status: 503 })
  kivraDown.setFault({ kind: 'server-error', status: 503 })

  const secrets: Record<string, Record<string, string>> = {
    'secret/kivra': { ...kivra.secret, webhookSecret: secretOf('kivra-webhook') },
    'secret/kivra-short': { ...kivraShort.secret },
    'secret/kivra-flaky': { ...kivraFlaky.secret },
    'secret/kivra-down': { ...kivraDown.secret },
    'secret/sir': { ...sir.secret }
  }
  const credential = (id: string, provider: string, standIn: { url: string }) =>
    ({ id, provider, environment: 'sandbox', secret: `secret/${id}`, base_url: standIn.url, allowed_callers: ['service'] })
  let testApp: TestApp
  try {
    testApp = await buildTestApp({
      credentialsFile: {
        callers: apiKeyCallers(keys),
        credentials: [
          credential('kivra', 'kivra', kivra),
          credential('kivra-short', 'kivra', kivraShort),
          credential('kivra-flaky', 'kivra', kivraFlaky),
          credential('kivra-down', 'kivra', kivraDown),
          credential('sir', 'sir-giving', sir)
        ]
      },
      secrets,
      overrides: {
        brokerOptions: {
          // Failed mints are retried within 0.2-0.4 s, so a broker 503 says Retry-After: 1 (its floor)
          // and the provider is tried again before the client's retry arrives.
          backoff: { baseMs: 200, capMs: 400 },
          breakerFailureThreshold: 1_000_000,
          // The fetch tests report rejections back to back; the broker's floor is its own tests' business.
          rejectionRefreshIntervalMs: 0
        }
      }
    })
  } catch (err) {
    await closeAll(standIns)
    throw err
  }

  const brokerRequests: BrokerRequest[] = []
  let answered: ((request: BrokerRequest) => void) | undefined
  // A second 'request' listener only watches: Fastify's own listener answers.
  testApp.app.server.on('request', (req, res) => {
    const at = performance.now()
    // Fastify passes its headers to writeHead rather than setHeader: look at them there.
    let requestId: string | undefined
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => typeof res
    res.writeHead = ((...args: unknown[]) => {
      const headers = args.find((arg): arg is Record<string, unknown> => typeof arg === 'object' && arg !== null && !Array.isArray(arg))
      const value = headers?.['x-request-id'] ?? res.getHeader('x-request-id')
      if (typeof value === 'string') requestId = value
      return writeHead(...args)
    }) as typeof res.writeHead
    res.on('finish', () => {
      const record = { method: req.method ?? '', url: req.url ?? '', status: res.statusCode, requestId, at }
      brokerRequests.push(record)
      answered?.(record)
    })
  })
  await testApp.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = testApp.app.server.address() as AddressInfo

  return {
    testApp,
    baseUrl: `http://127.0.0.1:${port}`,
    kivra,
    kivraShort,
    kivraFlaky,
    kivraDown,
    sir,
    secrets,
    brokerRequests,
    requestsTo: (path) => brokerRequests.filter(request => request.url.split('?')[0] === path),
    onAnswered: (listener) => { answered = listener },
    close: async () => {
      await testApp.close()
      await closeAll(standIns)
    }
  }
}
