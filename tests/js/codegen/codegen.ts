// The GraphQL Code Generator config of docs/clients.md, run by tests/http/test_codegen.py
// against the gateway's schema.graphql; the generated code must compile under tsc --strict.
import type { CodegenConfig } from '@graphql-codegen/cli';

// CODEGEN_NO_SCALARS=1 drops the map: strictScalars must then refuse to generate (the
// test's proof that the map is what types the scalars).
const scalars = process.env.CODEGEN_NO_SCALARS ? {} : {
  DateTime: 'string',
  Interval: 'string',
  JSON: 'string | number | boolean | null | { [key: string]: unknown } | unknown[]',
};

const config: CodegenConfig = {
  schema: '../../../schema.graphql',
  documents: ['usage.ts'],
  generates: {
    './generated/': {
      preset: 'client',
      config: {
        strictScalars: true,
        scalars,
      },
    },
  },
};
export default config;
