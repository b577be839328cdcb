/**
 * The proxy test world: the REAL broker app (buildTestApp: real Redis, unique key prefix) listening on
 * 127.0.0.1 port 0; a Kivra stand-in minting the tokens, an API stand-in (api-stand-in.ts) behind the proxy,
 * the SIR Giving stand-in (which checks signatures as SIR Giving documents them) and an OAuth2 stand-in.
 * Requests are sent over real sockets, some as raw bytes (rawRequest) so that no client normalises a path
 * before the broker judges it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { apiKeyCallers, buildTestApp, closeAll, type TestApp } from '../support/app.js'
import { freePort } from '../support/ports.js'
import { startKivraStandIn, startOAuth2StandIn, startSirGivingStandIn, type KivraStandIn, type OAuth2StandIn, type SirGivingStandIn } from '../support/providers/index.js'
import { startApiStandIn, type ApiStandIn } from './api-stand-in.js'

export const keys = {
  service: `proxy-test-service-${randomBytes(8).toString('hex')}`,
  other: `proxy-test-other-${randomBytes(8).toString('hex')}`
} as const

export interface ProxyWorld {
  testApp: TestApp
  baseUrl: string
  port: number
  kivra: KivraStandIn
  /** The token endpoint of "kivra-down": 503 to every mint. */
  kivraDown: KivraStandIn
  api: ApiStandIn
  sir: SirGivingStandIn
  oauth2: OAuth2StandIn
  close: () => Promise<void>
}

export interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends one HTTP/1.1 request as raw bytes (the path exactly as given: nothing parses or normalises it)
 * and reads the whole answer (the connection is closed by asking for `Connection: close`).
 */
export async function rawRequest (port: number, request: { method?: string, path: string, headers?: Record<string, string>, body?: string }): Promise<RawAnswer> {
  const body = request.body ?? ''
  const headers = { host: `127.0.0.1:${port}`, connection: 'close', ...(body === '' ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...request.headers }
  const head = `${request.method ?? 'GET'} ${request.path} HTTP/1.1\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`
  const text = await new Promise<string>((resolve, reject) => {
    // Not ended after writing: a half-closed socket makes Node's server drop the request unanswered.
    const socket = connect(port, '127.0.0.1', () => { socket.write(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)])) })
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    socket.on('end', () => { resolve(Buffer.concat(chunks).toString('utf8')) })
    socket.on('error', reject)
  })
  const [statusLine = '', ...lines] = text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n')
  const answerHeaders: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    answerHeaders[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1]), headers: answerHeaders, body: text.slice(text.indexOf('\r\n\r\n') + 4) }
}

export async function startProxyWorld (): Promise<ProxyWorld> {
  const kivra = await startKivraStandIn({ clientSecret: `kivra-${randomBytes(12).toString('hex')}` })
  const kivraDown = await startKivraStandIn()
  kivraDown.setFault({ kind: 'server-error', status: 503 })
  const api = await startApiStandIn(kivra)
  const sir = await startSirGivingStandIn({ hmacSecret: createHash('sha256').update(randomBytes(16)).digest('hex') })
  const oauth2 = await startOAuth2StandIn()
  const deadPort = await freePort()
  const standIns = [kivra, kivraDown, api, sir, oauth2]
  const apiBase = `${api.url}/api`
  const kivraCredential = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ id, provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, api_base_url: apiBase, allowed_callers: ['service'], ...extra })
  const sirCredential = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ id, provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', base_url: sir.url, allowed_callers: ['service'], ...extra })

  let testApp: TestApp
  try {
    testApp = await buildTestApp({
      credentialsFile: {
        callers: apiKeyCallers(keys),
        credentials: [
          kivraCredential('kivra'),
          kivraCredential('kivra-narrow', { proxy: { allowed_paths: ['/v1/public/', '/v2/echo'], methods: ['GET', 'POST'], body_limit: 16 } }),
          kivraCredential('kivra-quick', { proxy: { timeout_ms: 300 } }),
          kivraCredential('kivra-dead', { api_base_url: `http://127.0.0.1:${deadPort}/api` }),
          kivraCredential('kivra-down', { base_url: kivraDown.url, secret: 'secret/kivra-down' }),
          sirCredential('sir'),
          sirCredential('sir-hidden', { expose_partner_key: false }),
          sirCredential('sir-wrong', { secret: 'secret/sir-wrong' }),
          { id: 'oauth2', provider: 'oauth2', environment: 'production', secret: 'secret/oauth2', token_url: oauth2.tokenUrl, allowed_callers: ['service'] }
        ]
      },
      secrets: {
        'secret/kivra': { ...kivra.secret },
        'secret/kivra-down': { ...kivraDown.secret },
        'secret/sir': { ...sir.secret },
        'secret/sir-wrong': { ...sir.secret, secretKey: `sk_test_${randomBytes(12).toString('hex')}` },
        'secret/oauth2': { ...oauth2.secret }
      },
      // Rejection reports back to back in these tests; the broker's floor between them is tested elsewhere.
      overrides: { brokerOptions: { rejectionRefreshIntervalMs: 0 } }
    })
  } catch (err) {
    await closeAll(standIns)
    throw err
  }
  await testApp.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = testApp.app.server.address() as AddressInfo
  return {
    testApp,
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    kivra,
    kivraDown,
    api,
    sir,
    oauth2,
    close: async () => {
      await testApp.close()
      await closeAll(standIns)
    }
  }
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One request with Node's http client (any header may be set; the path is sent as given, not normalised). */
export async function send (port: number, request: { method?: string, path: string, headers?: Record<string, string | string[]>, body?: string | Buffer }): Promise<Answer> {
  // Node's client sends no Content-Length (and no chunked encoding) for a DELETE body unless told.
  const headers = request.body === undefined ? request.headers : { 'content-length': String(Buffer.byteLength(request.body)), ...request.headers }
  return await new Promise<Answer>((resolve, reject) => {
    const outgoing = httpRequest({ host: '127.0.0.1', port, method: request.method ?? 'GET', path: request.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    outgoing.on('error', reject)
    outgoing.end(request.body)
  })
}
