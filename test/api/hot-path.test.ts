import { createHook } from 'node:async_hooks'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { tempFile } from '../support/app.js'
import { audience, callerToken, signingKey } from '../auth/jwt-issuer.js'
import { bearer, keys, startApiWorld, type ApiWorld } from './world.js'
import { sleep } from '../../src/time.js'

type Listener = (req: IncomingMessage, res: ServerResponse) => void

interface Pass { promisesCreated: number, answeredBeforeReturning: boolean }

/**
 * A cache hit is one synchronous pass (issue 12): between the request's arrival (Fastify's 'request'
 * listener) and its reply being written, no promise is made and nothing waits; and it touches no store.
 */
describe('GET /v1/credentials/:id/token on a local-cache hit', () => {
  let world: ApiWorld
  let url: string
  let jwt: string
  const passes: Pass[] = []

  beforeAll(async () => {
    const key = await signingKey('ES256')
    world = await startApiWorld({
      callerJwt: { issuer: 'https://kubernetes.default.svc.cluster.local', audience, jwks_file: tempFile('jwks.json', JSON.stringify({ keys: [key.jwk] })) },
      extraCallers: [{ id: 'jwt-service', jwt_subject: 'system:serviceaccount:ns:jwt-service' }],
      extraAllowedOnKivra: ['jwt-service']
    })
    jwt = await callerToken(key, { sub: 'system:serviceaccount:ns:jwt-service' })
    const { app } = world.testApp
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    // Fastify's own request listener, wrapped: promises made while it runs, and whether the answer was
    // complete when it returned. Enabling the promise hook only around the call counts this request's alone.
    const [fastify] = app.server.listeners('request') as Listener[]
    app.server.removeAllListeners('request')
    let promisesCreated = 0
    const hook = createHook({ init (_id, type) { if (type === 'PROMISE') promisesCreated++ } })
    app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      promisesCreated = 0
      hook.enable()
      try {
        fastify?.(req, res)
      } finally {
        hook.disable()
      }
      passes.push({ promisesCreated, answeredBeforeReturning: res.writableEnded })
    })
  })
  afterAll(async () => { await world.close() })
  beforeEach(async () => {
    // A caller's first request of a rate-limit window reads the shared count from Redis (once per minute).
    const left = 60_000 - (Date.now() % 60_000)
    if (left < 5000) await sleep(left + 50)
    passes.length = 0
  })

  const get = async (path: string, authorization: string): Promise<{ status: number, body: Record<string, unknown>, pass: Pass }> => {
    const response = await fetch(`${url}${path}`, { headers: { authorization } })
    const body = await response.json() as Record<string, unknown>
    return { status: response.status, body, pass: passes.at(-1) as Pass }
  }

  it('answers without a promise, an await or a store command, for API-key and JWT callers', async () => {
    const apiKey = bearer(keys.service).authorization as string
    // Warm-up: the mint, the caller's first count of the window, the JWT's one verification.
    expect((await get('/v1/credentials/kivra/token?min_ttl=60', apiKey)).status).toBe(200)
    expect((await get('/v1/credentials/kivra/token?min_ttl=60', `Bearer ${jwt}`)).status).toBe(200)

    // From here on every store method throws: an answer that needed the store would be an error.
    const store = world.testApp.app.store as unknown as Record<string, unknown>
    const saved = new Map<string, unknown>()
    for (const name of ['get', 'acquireLease', 'renewLease', 'leaseRemainingMs', 'releaseLease', 'putGrant', 'deleteGrant', 'health']) {
      saved.set(name, store[name])
      store[name] = () => { throw new Error(`store.${name} called on a cache hit`) }
    }
    try {
      for (const [path, authorization] of [
        ['/v1/credentials/kivra/token?min_ttl=60', apiKey],
        ['/v1/credentials/kivra/token', apiKey],
        ['/v1/credentials/kivra/token?min_ttl=0001&other=1', apiKey],
        ['/v1/credentials/kivra/token?min_ttl=60', `Bearer ${jwt}`]
      ] as const) {
        const { status, body, pass } = await get(path, authorization)
        expect(status, path).toBe(200)
        expect(world.standIns.kivra.isTokenValid(body.access_token as string)).toBe(true)
        expect(pass, path).toEqual({ promisesCreated: 0, answeredBeforeReturning: true })
      }
    } finally {
      for (const [name, method] of saved) store[name] = method
    }
  })

  it('takes the ordinary path, with its promises, for what is not a cache hit (so the check above can fail)', async () => {
    const apiKey = bearer(keys.service).authorization as string
    // A provider that fails: the refresh path. A scoped grant: the schema and the handler.
    for (const path of ['/v1/credentials/kigo-down/token', '/v1/credentials/kivra/token?scope=post:kivra.v1.tenant.example.content']) {
      const { pass } = await get(path, apiKey)
      expect(pass.promisesCreated + (pass.answeredBeforeReturning ? 0 : 1), path).toBeGreaterThan(0)
    }
  })

  it('writes one audit line per hit, from the pre-built prefix, with the client address and the caller\'s own request id', async () => {
    const response = await fetch(`${url}/v1/credentials/kivra/token`, { headers: { ...bearer(keys.service), 'x-request-id': 'caller-chosen-id' } })
    expect(response.status).toBe(200)
    const ourId = response.headers.get('x-request-id')
    expect(ourId).not.toBe('caller-chosen-id')
    const lines = world.testApp.logs.entries().filter(entry => entry.msg === 'token issued' && entry.reqId === ourId)
    expect(lines).toEqual([expect.objectContaining({ audit: true, caller: 'service', credentialId: 'kivra', outcome: 'issued', route: 'GET /v1/credentials/:id/token', client: '127.0.0.1', caller_request_id: 'caller-chosen-id', source: 'local' })])
  })
})
