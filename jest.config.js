export default {
  projects: ['<rootDir>/packages/*/jest.config.js'],
  collectCoverageFrom: ['packages/*/src/**/*.ts'],
};
