export { HttpStorage } from '@coffer/http';
