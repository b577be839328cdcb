// Writes openapi.yaml from the route schemas. `npm run openapi`; a test fails when the file drifts.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { generateOpenApiYaml } from '../src/openapi.js'

const target = fileURLToPath(new URL('../openapi.yaml', import.meta.url))
writeFileSync(target, await generateOpenApiYaml())
console.log(`wrote ${target}`)
