import { buildApp } from './app.js'
import { embeddedCredentialsFile, loadConfig } from './config.js'
import { createLogger } from './observability/logger.js'

/**
 * The OpenAPI document generated from the route schemas, as YAML. Built from the example configuration
 * without starting the broker (no provider is called): the routes, not the configuration, make the spec.
 */
export async function generateOpenApiYaml (): Promise<string> {
  const config = loadConfig({ CREDENTIALS_FILE: embeddedCredentialsFile, LOG_LEVEL: 'silent' })
  const app = await buildApp(config, { logger: createLogger('silent'), startBroker: false })
  try {
    await app.ready()
    return app.swagger({ yaml: true })
  } finally {
    await app.close()
  }
}
