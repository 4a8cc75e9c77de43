export * from './linear-solve';
export * from './conjugate-gradient';
export * from './neumann';
export * from './fixed-point';
export * from './dense';
