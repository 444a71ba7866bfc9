export { embeddedLocks } from "./embedded";
export { postgresLocks, type PostgresLocksPool, type PostgresLocksOptions } from "./postgres";
export { redisLocks, type RedisCommandable, type RedisLocksOptions } from "./redis";
