import fp from 'fastify-plugin'
import type { JWTVerifyGetKey } from 'jose'
import type { Caller } from '../config.js'
import { createAuthenticator, type Authenticator } from './authenticate.js'

declare module 'fastify' {
  interface FastifyInstance {
    authenticator: Authenticator
  }
  interface FastifyRequest {
    /** The authenticated caller; null until a route plugin's authentication hook has run. */
    caller: Caller | null
  }
}

/** Decorates `authenticator` from the callers and caller_jwt of the credentials file. */
export const authPlugin = fp<{ jwks?: JWTVerifyGetKey | undefined }>(async (app, options) => {
  app.decorate('authenticator', createAuthenticator({ callers: app.config.callers, callerJwt: app.config.callerJwt, log: app.logger, jwks: options.jwks }))
  app.decorateRequest('caller', null)
}, { name: 'auth', fastify: '5.x', dependencies: ['config'] })
