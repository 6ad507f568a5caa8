import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".kafka/", "coverage/", "bi/", "data/", "bench/.data/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      // Effect's generators and the kafkajs boundary use these deliberately
      "require-yield": "off",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-constant-condition": ["error", { checkLoops: false }]
    }
  },
  {
    files: ["scripts/**/*.mjs", "*.js"],
    languageOptions: {
      globals: { process: "readonly", console: "readonly", setTimeout: "readonly", clearTimeout: "readonly", URL: "readonly", Buffer: "readonly" }
    }
  },
  {
    // reference values written to more digits than a double holds, on purpose
    files: ["test/**/*.ts"],
    rules: { "no-loss-of-precision": "off" }
  }
)
