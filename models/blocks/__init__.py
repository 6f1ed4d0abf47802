"""Image-network building blocks shared by the methods (PIFu does not use them)."""

from models.blocks.resunet import ResNet34Encoder, ResUNet34, load_torchvision_resnet34

__all__ = ["ResNet34Encoder", "ResUNet34", "load_torchvision_resnet34"]
