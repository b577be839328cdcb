import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { assertAdmin } from '../auth/policy.js'
import type { Caller } from '../config.js'
import { BrokerError } from '../errors.js'
import { fingerprint } from '../broker/broker.js'
import { credentialKind, toStatusBody } from './credentials.js'
import { CredentialIdParams, CredentialStatusSchema, problems } from './schemas.js'

const AdminCredentialSchema = CredentialStatusSchema.extend({
  allowed_callers: z.array(z.string()),
  secret_path: z.string(),
  backend_only: z.boolean()
}).meta({ id: 'AdminCredentialStatus' })

/** Operator view of every credential, and forced refresh. Admin callers only. */
export const adminRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const credentialsById = new Map(app.config.credentials.map(credential => [credential.id, credential]))
  // JSON only: Fastify's default text/plain parser would turn a text body into a 400 instead of a 415.
  app.removeContentTypeParser('text/plain')

  app.addHook('onRequest', async (request) => {
    request.caller = await app.authenticator.authenticate(request.headers.authorization)
    assertAdmin(request.caller)
  })
  app.addHook('onRequest', app.callerRateLimit)

  api.get('/credentials', {
    schema: {
      tags: ['admin'],
      summary: 'Every credential with its state, schedule and last error',
      security: [{ bearer: [] }],
      response: { 200: z.object({ credentials: z.array(AdminCredentialSchema) }), ...problems(401, 403, 429, 503) }
    }
  }, async () => {
    return {
      credentials: app.broker.statuses().flatMap(status => {
        const credential = credentialsById.get(status.id)
        if (credential === undefined) return []
        return [{ ...toStatusBody(status, credentialKind(credential)), allowed_callers: [...credential.allowed_callers], secret_path: credential.secret, backend_only: credential.backend_only }]
      })
    }
  })

  api.post('/credentials/:id/refresh', {
    schema: {
      tags: ['admin'],
      summary: 'Refresh a credential now (after a rotation, or to test the provider)',
      security: [{ bearer: [] }],
      params: CredentialIdParams,
      response: {
        200: z.object({ id: z.string(), expires_at: z.iso.datetime(), obtained_at: z.iso.datetime(), fingerprint: z.string() }),
        ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503)
      }
    }
  }, async (request) => {
    const credential = credentialsById.get(request.params.id)
    if (credential === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', `no credential "${request.params.id}"`)
    const { grant } = await app.broker.forceRefresh(credential.id)
    request.log.info({ audit: true, caller: (request.caller as Caller).id, credentialId: credential.id, fingerprint: fingerprint(grant.accessToken) }, 'forced refresh')
    // The operator sees that it worked, not the token.
    return { id: credential.id, expires_at: new Date(grant.expiresAt).toISOString(), obtained_at: new Date(grant.obtainedAt).toISOString(), fingerprint: fingerprint(grant.accessToken) }
  })
}
