import { createHash, createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BrokerError, createBrokerClient, type BrokerClient, type WebhookVerification } from '../../client/src/index.js'
import { kivraWebhookHeaders, sirGivingWebhookHeaders } from '../support/providers/index.js'
import { keys, startClientWorld, type ClientWorld } from './world.js'

const sha256Hex = (body: string | Uint8Array): string => createHash('sha256').update(body).digest('hex')

describe('client.sign and client.verifyWebhook against the real broker', () => {
  let world: ClientWorld
  let client: BrokerClient
  beforeAll(async () => {
    world = await startClientWorld()
    client = createBrokerClient({ baseUrl: world.baseUrl, apiKey: keys.service })
  })
  afterAll(async () => { await world.close() })

  describe('sign', () => {
    it.each([
      ['a POST with a JSON body (method in lower case)', 'post', '/v1/partner/donations?campaign=42&currency=USD', '{"amount":1000,"idempotencyKey":"abc-1","note":"åäö"}'],
      ['a GET without a body', 'GET', '/v1/partner/pools/7', undefined],
      // Bytes, not a string (the SIR Giving stand-in reads bodies as UTF-8, so these bytes are valid UTF-8).
      ['a PUT with a Uint8Array body', 'PUT', '/v1/partner/files/1', new TextEncoder().encode('{"note":"ü ✓"}\n')]
    ] as const)('%s: the headers match the documented SIR Giving formula, and SIR Giving accepts the request', async (_name, method, path, body) => {
      const before = Math.floor(Date.now() / 1000)
      const headers = await client.sign('sir', { method, path, body })
      const after = Math.floor(Date.now() / 1000)
      expect(Object.keys(headers).sort()).toEqual(['X-Partner-Key', 'X-Signature', 'X-Timestamp'])
      expect(headers['X-Partner-Key']).toBe(world.sir.secret.secretKey)
      const timestamp = Number(headers['X-Timestamp'])
      expect(timestamp).toBeGreaterThanOrEqual(before)
      expect(timestamp).toBeLessThanOrEqual(after)
      // providers.md: lowercase hex HMAC-SHA256 keyed with hmacSecret over
      // timestamp + METHOD + pathWithQueryString + hex(sha256(rawBody)), no separator.
      const expected = createHmac('sha256', world.sir.secret.hmacSecret as string)
        .update(`${headers['X-Timestamp']}${method.toUpperCase()}${path}${sha256Hex(body ?? '')}`)
        .digest('hex')
      expect(headers['X-Signature']).toBe(expected)

      const accepted = world.sir.acceptedCalls
      const sent = await fetch(`${world.sir.url}${path}`, { method: method.toUpperCase(), headers, body: body === undefined ? undefined : typeof body === 'string' ? body : Buffer.from(body) })
      expect(sent.status).toBe(200)
      expect(world.sir.acceptedCalls).toBe(accepted + 1)
    })

    it('every call signs afresh (a retry needs its own signature)', async () => {
      const first = await client.sign('sir', { method: 'GET', path: '/v1/partner/pools' })
      await new Promise(resolve => setTimeout(resolve, 1100))
      const second = await client.sign('sir', { method: 'GET', path: '/v1/partner/pools' })
      expect(Number(second['X-Timestamp'])).toBeGreaterThan(Number(first['X-Timestamp']))
      expect(second['X-Signature']).not.toBe(first['X-Signature'])
    })

    it('a token credential: the broker\'s CB_UNSUPPORTED_OPERATION', async () => {
      const err = await client.sign('kivra', { method: 'GET', path: '/' }).then(() => undefined, (error: unknown) => error)
      expect(err).toBeInstanceOf(BrokerError)
      expect(err).toMatchObject({ code: 'CB_UNSUPPORTED_OPERATION', status: 409 })
    })

    it('a path the broker cannot sign: CB_BAD_REQUEST with the field named', async () => {
      const err = await client.sign('sir', { method: 'GET', path: 'no-leading-slash' }).then(() => undefined, (error: unknown) => error) as BrokerError
      expect(err).toMatchObject({ code: 'CB_BAD_REQUEST', status: 400 })
      expect(err.errors?.map(error => error.path)).toEqual(['body.path'])
    })
  })

  describe('verifyWebhook: a receiver hands over what it received', () => {
    let receiver: Server
    let receiverUrl: string
    let verdicts: WebhookVerification[]
    let mutate: (body: Buffer) => Buffer | string = body => body
    beforeAll(async () => {
      verdicts = []
      // A webhook receiver as a service would write it: raw body bytes and Node's req.headers, as received.
      receiver = createServer((req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
        req.on('end', () => {
          const id = (req.url ?? '').slice(1)
          client.verifyWebhook(id, { headers: req.headers as IncomingHttpHeaders, body: mutate(Buffer.concat(chunks)) })
            .then(verdict => { verdicts.push(verdict); res.writeHead(verdict.valid ? 204 : 401).end() })
            .catch(() => { res.writeHead(500).end() })
        })
      })
      await new Promise<void>(resolve => { receiver.listen(0, '127.0.0.1', resolve) })
      receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`
    })
    afterAll(async () => {
      receiver.closeAllConnections()
      await new Promise(resolve => { receiver.close(resolve) })
    })

    const now = (): string => String(Math.floor(Date.now() / 1000))
    const event = JSON.stringify({ id: 'evt_1', type: 'donation.created', createdAt: new Date().toISOString(), data: { amount: 1000, note: 'åäö ✓' } })
    const deliver = async (id: string, headers: Record<string, string | string[]>, body: string): Promise<number> => {
      const flat: Array<[string, string]> = Object.entries(headers).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map(v => [name, v] as [string, string]))
      const response = await fetch(`${receiverUrl}/${id}`, { method: 'POST', headers: [...flat, ['cookie', 'receiver-session=1'], ['content-type', 'application/json']], body })
      return response.status
    }

    it('a SIR Giving delivery signed with the held webhook secret is valid', async () => {
      mutate = body => body
      const status = await deliver('sir', sirGivingWebhookHeaders(event, world.secrets['secret/sir']?.webhookSecret as string, { timestamp: now() }), event)
      expect(status).toBe(204)
      expect(verdicts.at(-1)).toEqual({ valid: true })
    })

    it('the same delivery with the body changed on the way is not', async () => {
      mutate = body => Buffer.from(body.toString('utf8').replace('1000', '9000'))
      const status = await deliver('sir', sirGivingWebhookHeaders(event, world.secrets['secret/sir']?.webhookSecret as string, { timestamp: now() }), event)
      expect(status).toBe(401)
      expect(verdicts.at(-1)).toEqual({ valid: false, reason: 'bad_signature' })
    })

    it('a Kivra delivery with one signature header per secret in rotation (repeated header), body given as a string', async () => {
      mutate = body => body.toString('utf8')
      const headers = kivraWebhookHeaders(event, ['an-old-secret', world.secrets['secret/kivra']?.webhookSecret as string], { timestamp: now(), join: 'repeat' })
      expect(await deliver('kivra', headers, event)).toBe(204)
      expect(verdicts.at(-1)).toEqual({ valid: true })
    })

    it('headers as a WHATWG Headers object and a body that is not UTF-8', async () => {
      const raw = new Uint8Array([0, 255, 1, 254, 10, 13])
      const timestamp = now()
      // Computed here from providers.md: HMAC-SHA256 hex over timestamp + "." + rawBody, keyed with whsec_.
      const signature = createHmac('sha256', world.secrets['secret/sir']?.webhookSecret as string).update(`${timestamp}.`).update(raw).digest('hex')
      const headers = new Headers({ 'X-SIR-Signature': `sha256=${signature}`, 'X-SIR-Timestamp': timestamp })
      expect(await client.verifyWebhook('sir', { headers, body: raw })).toEqual({ valid: true })
      expect(await client.verifyWebhook('sir', { headers, body: raw.slice(1) })).toEqual({ valid: false, reason: 'bad_signature' })
      expect(await client.verifyWebhook('sir', { headers: {}, body: raw })).toEqual({ valid: false, reason: 'missing_signature' })
    })
  })
})
