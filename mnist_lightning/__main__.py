from mnist_lightning.console import console

console()
