from mnist_lightning.cli import console

console()
