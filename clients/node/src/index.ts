export * from "./client.js";
export * from "./keyring.js";
export * from "./protocol.js";
export { InvalidJobError, validateJob } from "./validate.js";
