// node --import ./cf-shim/register.mjs ...: installs the resolve hook.
import { register } from 'node:module';

register(new URL('./hooks.mjs', import.meta.url));
